//! Answers to verified federation queries (spec `federation.md` §Queries): key claims, profiles,
//! joins with an invite, history and members of channels hosted here.

use mobium_spec::client::{HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT, Messages};
use mobium_spec::federation::{Query, QueryResult};
use mobium_spec::permissions::Permissions;
use mobium_spec::{ErrorCode, PROTOCOL_VERSION, ServerName};

use crate::domain::{self, App, DomainError, err, perms};
use crate::storage::HistoryQuery;

/// A verified query (`ping`, `claim_keys`, `profile`, `join_channel`, `history`, `members`).
pub(super) async fn answer(
    app: &App,
    origin: &ServerName,
    query: Query,
) -> Result<QueryResult, DomainError> {
    match query {
        Query::Ping => Ok(QueryResult::Pong {
            protocol_version: PROTOCOL_VERSION,
            software: format!("mobium {}", env!("CARGO_PKG_VERSION")),
        }),
        Query::ClaimKeys { user, requester } => {
            if requester.server != *origin {
                return Err(err(
                    ErrorCode::Forbidden,
                    "the requester is not a user of the asking server",
                ));
            }
            if !app.is_local(&user) {
                return Err(err(ErrorCode::NotFound, "not a user of this server"));
            }
            domain::claim_local(app, &user)
                .await
                .map(QueryResult::KeyBundle)
        }
        Query::Profile { user } => {
            if !app.is_local(&user) || !app.store.user_exists(&user.key).await? {
                return Err(err(ErrorCode::NotFound, "no such user on this server"));
            }
            Ok(QueryResult::Profile {
                presence: app.visible_status(&user.key).await,
                user,
            })
        }
        Query::JoinChannel { code, user } => {
            if user.server != *origin {
                return Err(err(
                    ErrorCode::Forbidden,
                    "the joining user is not a user of the asking server",
                ));
            }
            let (channel, seq) = domain::join_hosted(app, &user, &code).await?;
            Ok(QueryResult::Joined { channel, seq })
        }
        Query::History {
            channel,
            user,
            before,
            after,
            limit,
        } => {
            if user.server != *origin || !app.hosts(&channel) {
                return Err(err(ErrorCode::Forbidden, "not allowed"));
            }
            let ch = perms::channel(app, &channel).await?;
            perms::require(app, &ch, &user, Permissions::VIEW).await?;
            let limit = limit.unwrap_or(HISTORY_DEFAULT_LIMIT);
            if limit == 0 || limit > HISTORY_MAX_LIMIT {
                return Err(err(ErrorCode::InvalidArgument, "limit must be 1-100"));
            }
            let (rows, has_more) = app
                .store
                .history(
                    &ch.id,
                    HistoryQuery {
                        before,
                        after,
                        limit,
                    },
                )
                .await?;
            Ok(QueryResult::Messages(Messages {
                channel: ch.id.clone(),
                messages: rows.into_iter().map(domain::message_to_wire).collect(),
                has_more,
            }))
        }
        Query::Members { channel, user } => {
            if user.server != *origin || !app.hosts(&channel) {
                return Err(err(ErrorCode::Forbidden, "not allowed"));
            }
            let ch = perms::channel(app, &channel).await?;
            perms::require(app, &ch, &user, Permissions::VIEW).await?;
            domain::member_list(app, &ch)
                .await
                .map(QueryResult::Members)
        }
        _ => Err(err(ErrorCode::UnknownOp, "unknown query")),
    }
}
