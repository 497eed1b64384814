//! The user's vodozemac Olm [`Account`]: its Ed25519 key *is* the user's identity (spec
//! `e2ee.md` §Keys), so it signs auth proofs and prekeys ([`Signer`]), and its Curve25519
//! identity, one-time and fallback keys are published as signed prekeys (spec `client/keys.md`).

use mobium_spec::client::{KeysCount, KeysUpload, MAX_KEYS_PER_UPLOAD, Prekey, PrekeyKind};
use mobium_spec::{Domain, PublicKey, Signature, Signer};
use vodozemac::olm::{Account, AccountPickle};

use super::E2eeError;

/// The `key_id` of the identity prekey (any stable string will do, spec `client/keys.md`).
pub const IDENTITY_KEY_ID: &str = "curve25519";

/// How many one-time keys a client keeps on its server (spec `e2ee.md`: about 50).
pub const TARGET_ONE_TIME_KEYS: u32 = 50;

/// The user's Olm account.
pub struct UserAccount {
    account: Account,
    public: PublicKey,
}

impl std::fmt::Debug for UserAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserAccount({})", self.public)
    }
}

impl UserAccount {
    /// A fresh account with new identity keys.
    pub fn generate() -> Result<Self, E2eeError> {
        Self::wrap(Account::new())
    }

    /// Restores an account from its pickle.
    pub fn from_pickle(pickle: AccountPickle) -> Result<Self, E2eeError> {
        Self::wrap(Account::from_pickle(pickle))
    }

    fn wrap(account: Account) -> Result<Self, E2eeError> {
        let public = PublicKey::from_bytes(*account.ed25519_key().as_bytes())
            .map_err(|_| E2eeError::InvalidAccount)?;
        Ok(UserAccount { account, public })
    }

    /// The pickle to persist.
    pub fn pickle(&self) -> AccountPickle {
        self.account.pickle()
    }

    /// The vodozemac account.
    pub fn inner(&self) -> &Account {
        &self.account
    }

    /// The vodozemac account, mutably (session creation consumes one-time keys).
    pub fn inner_mut(&mut self) -> &mut Account {
        &mut self.account
    }

    /// The Curve25519 identity key's 32 bytes.
    pub fn curve25519(&self) -> [u8; 32] {
        self.account.curve25519_key().to_bytes()
    }

    /// The identity key as a signed prekey of kind `identity`.
    pub fn identity_prekey(&self) -> Prekey {
        Prekey::sign(
            self,
            PrekeyKind::Identity,
            IDENTITY_KEY_ID,
            &self.curve25519(),
        )
    }

    /// A signing-only copy, for a connection that must sign again on every reconnect without
    /// sharing the mutable account. Its Ed25519 key is the same.
    pub fn signer(&self) -> AccountSigner {
        AccountSigner {
            account: Account::from_pickle(self.account.pickle()),
            public: self.public,
        }
    }

    /// What to upload so the server holds about [`TARGET_ONE_TIME_KEYS`] one-time keys and a
    /// fallback key, given what it holds now. `new_fallback` forces a new fallback key (after
    /// the old one was used). `None` when nothing is needed. Call
    /// [`UserAccount::mark_published`] after the server accepted the upload.
    pub fn prepare_upload(
        &mut self,
        server: KeysCount,
        with_identity: bool,
        new_fallback: bool,
    ) -> Option<KeysUpload> {
        let missing = TARGET_ONE_TIME_KEYS.saturating_sub(server.one_time);
        let want_otks = if server.one_time < TARGET_ONE_TIME_KEYS / 2 {
            (missing as usize).min(MAX_KEYS_PER_UPLOAD)
        } else {
            0
        };
        if want_otks > 0 {
            self.account.generate_one_time_keys(want_otks);
        }
        if new_fallback || !server.fallback {
            self.account.generate_fallback_key();
        }
        let mut one_time_keys: Vec<Prekey> = self
            .account
            .one_time_keys()
            .into_iter()
            .map(|(id, key)| {
                Prekey::sign(self, PrekeyKind::OneTime, &id.to_base64(), key.as_bytes())
            })
            .collect();
        one_time_keys.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        one_time_keys.truncate(MAX_KEYS_PER_UPLOAD);
        let fallback_key = self
            .account
            .fallback_key()
            .into_iter()
            .next()
            .map(|(id, key)| {
                Prekey::sign(self, PrekeyKind::Fallback, &id.to_base64(), key.as_bytes())
            });
        if one_time_keys.is_empty() && fallback_key.is_none() && !with_identity {
            return None;
        }
        Some(KeysUpload {
            identity_key: with_identity.then(|| self.identity_prekey()),
            signed_prekey: None,
            one_time_keys,
            fallback_key,
        })
    }

    /// Marks the keys of the last [`UserAccount::prepare_upload`] as published.
    pub fn mark_published(&mut self) {
        self.account.mark_keys_as_published();
    }
}

impl Signer for UserAccount {
    fn public_key(&self) -> PublicKey {
        self.public
    }

    fn sign_domain(&self, domain: Domain, message: &[u8]) -> Signature {
        Signature(self.account.sign(domain.signing_input(message)).to_bytes())
    }
}

/// A copy of the account used only to sign (see [`UserAccount::signer`]).
pub struct AccountSigner {
    account: Account,
    public: PublicKey,
}

impl Signer for AccountSigner {
    fn public_key(&self) -> PublicKey {
        self.public
    }

    fn sign_domain(&self, domain: Domain, message: &[u8]) -> Signature {
        Signature(self.account.sign(domain.signing_input(message)).to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_signs_as_the_user() {
        let account = UserAccount::generate().expect("account");
        let sig = account.sign_domain(Domain::ClientAuth, b"challenge");
        assert!(
            account
                .public_key()
                .verify(Domain::ClientAuth, b"challenge", &sig)
        );
        let copy = account.signer();
        assert_eq!(copy.public_key(), account.public_key());
        assert!(
            account
                .identity_prekey()
                .verify(&account.public_key(), PrekeyKind::Identity)
        );
    }

    #[test]
    fn upload_tops_up_to_the_target_and_signs_every_key() {
        let mut account = UserAccount::generate().expect("account");
        let empty = KeysCount {
            one_time: 0,
            fallback: false,
        };
        let up = account.prepare_upload(empty, true, false).expect("upload");
        assert_eq!(up.one_time_keys.len(), TARGET_ONE_TIME_KEYS as usize);
        let me = account.public_key();
        assert!(
            up.one_time_keys
                .iter()
                .all(|k| k.verify(&me, PrekeyKind::OneTime))
        );
        assert!(
            up.fallback_key
                .as_ref()
                .is_some_and(|k| k.verify(&me, PrekeyKind::Fallback))
        );
        account.mark_published();
        let full = KeysCount {
            one_time: TARGET_ONE_TIME_KEYS,
            fallback: true,
        };
        assert!(account.prepare_upload(full, false, false).is_none());
    }
}
