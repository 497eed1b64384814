//! Server-wide roles and per-channel overrides (spec `client/channels.md` §Permissions).
//!
//! Role management needs server-wide `manage_roles`, and nobody can create, change or grant a
//! role carrying bits they do not hold themselves (administrators hold every bit).

use mobium_spec::client::{
    EVERYONE_ROLE, MAX_SHORT_TEXT, OverrideClear, OverrideSet, OverrideTarget, Response, Role,
    RoleCreate, RoleGrant, RoleRef, RoleUpdate, Roles,
};
use mobium_spec::permissions::Permissions;
use mobium_spec::{ErrorCode, UserId};

use super::DomainError;
use super::{App, Handled, err, perms};
use crate::storage::{OverrideRow, OverrideTargetRow, RoleRow};

fn role(r: RoleRow) -> Role {
    Role {
        id: r.id,
        name: r.name,
        permissions: Permissions(r.permissions),
    }
}

/// The caller's server-wide bits, requiring `manage_roles` and every bit of `granting`.
async fn may_manage(app: &App, me: &UserId, granting: Permissions) -> Result<(), DomainError> {
    let mine = perms::server_wide(app, me).await?;
    if !mine.contains(Permissions::MANAGE_ROLES) {
        return Err(err(
            ErrorCode::Forbidden,
            "managing roles needs manage_roles",
        ));
    }
    if !mine.contains(granting) {
        return Err(err(
            ErrorCode::Forbidden,
            "cannot grant permissions you do not hold",
        ));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), DomainError> {
    if name.is_empty() || name.len() > MAX_SHORT_TEXT {
        return Err(err(ErrorCode::InvalidArgument, "role names are 1-64 bytes"));
    }
    Ok(())
}

/// `role_create`: a server-wide role (needs `manage_roles`).
pub(super) async fn create(app: &App, me: &UserId, r: RoleCreate) -> Handled {
    check_name(&r.name)?;
    may_manage(app, me, r.permissions).await?;
    let id = app.store.role_create(&r.name, r.permissions.0).await?;
    Ok(Response::Role(Role {
        id,
        name: r.name,
        permissions: r.permissions,
    }))
}

/// `role_update`: renames a role or changes its permissions (needs `manage_roles`).
pub(super) async fn update(app: &App, me: &UserId, r: RoleUpdate) -> Handled {
    if let Some(n) = &r.name {
        check_name(n)?;
    }
    let current = app
        .store
        .role_get(r.role)
        .await?
        .ok_or_else(|| err::<DomainError>(ErrorCode::NotFound, "no such role"))?;
    may_manage(
        app,
        me,
        Permissions(current.permissions).union(r.permissions.unwrap_or_default()),
    )
    .await?;
    let updated = app
        .store
        .role_update(r.role, r.name.as_deref(), r.permissions.map(|p| p.0))
        .await?
        .ok_or_else(|| err::<DomainError>(ErrorCode::NotFound, "no such role"))?;
    app.invalidate_permissions();
    Ok(Response::Role(role(updated)))
}

/// `role_delete`: deletes a role (needs `manage_roles`).
pub(super) async fn delete(app: &App, me: &UserId, r: RoleRef) -> Handled {
    if r.role == EVERYONE_ROLE {
        return Err(err(
            ErrorCode::InvalidArgument,
            "the everyone role cannot be deleted",
        ));
    }
    let current = app
        .store
        .role_get(r.role)
        .await?
        .ok_or_else(|| err::<DomainError>(ErrorCode::NotFound, "no such role"))?;
    may_manage(app, me, Permissions(current.permissions)).await?;
    app.store.role_delete(r.role).await?;
    app.invalidate_permissions();
    Ok(Response::Ok)
}

/// `role_list`: every role.
pub(super) async fn list(app: &App) -> Handled {
    let roles = app.store.roles().await?.into_iter().map(role).collect();
    Ok(Response::Roles(Roles { roles }))
}

/// `role_grant` / `role_revoke`: gives or takes a role (needs `manage_roles`).
pub(super) async fn grant(app: &App, me: &UserId, r: RoleGrant, give: bool) -> Handled {
    if r.role == EVERYONE_ROLE {
        return Err(err(
            ErrorCode::InvalidArgument,
            "everyone holds the everyone role",
        ));
    }
    let current = app
        .store
        .role_get(r.role)
        .await?
        .ok_or_else(|| err::<DomainError>(ErrorCode::NotFound, "no such role"))?;
    may_manage(app, me, Permissions(current.permissions)).await?;
    if give {
        app.store.role_grant(&r.user, r.role).await?;
    } else if !app.store.role_revoke(&r.user, r.role).await? {
        return Err(err(ErrorCode::NotFound, "the user does not hold this role"));
    }
    app.invalidate_permissions();
    Ok(Response::Ok)
}

fn target(t: OverrideTarget) -> OverrideTargetRow {
    match t {
        OverrideTarget::Role { role } => OverrideTargetRow::Role(role),
        OverrideTarget::User { user } => OverrideTargetRow::User(user),
    }
}

/// `override_set`: a channel's permission override for a role or member.
pub(super) async fn override_set(app: &App, me: &UserId, r: OverrideSet) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    perms::require_hosted(app, &ch)?;
    let mine = perms::require(app, &ch, me, Permissions::MANAGE_CHANNEL).await?;
    if !mine.contains(r.allow) {
        return Err(err(
            ErrorCode::Forbidden,
            "cannot allow permissions you do not hold",
        ));
    }
    if let OverrideTarget::Role { role } = &r.target
        && app.store.role_get(*role).await?.is_none()
    {
        return Err(err(ErrorCode::NotFound, "no such role"));
    }
    let row = OverrideRow {
        target: target(r.target),
        allow: r.allow.0,
        deny: r.deny.0,
    };
    app.store.override_set(&ch.id, &row).await?;
    app.invalidate_permissions();
    Ok(Response::Ok)
}

/// `override_clear`: removes a channel's permission override.
pub(super) async fn override_clear(app: &App, me: &UserId, r: OverrideClear) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    perms::require_hosted(app, &ch)?;
    perms::require(app, &ch, me, Permissions::MANAGE_CHANNEL).await?;
    if !app.store.override_clear(&ch.id, &target(r.target)).await? {
        return Err(err(ErrorCode::NotFound, "no such override"));
    }
    app.invalidate_permissions();
    Ok(Response::Ok)
}
