//! Errors: parse errors for identifiers and keys, and the protocol's error codes (spec `errors.md`).
//!
//! [`IdError`] is what a parser returns for non-canonical or malformed text; [`ErrorCode`] is the
//! closed-but-extensible set of codes that travel on the wire in error responses of both the client
//! and the federation protocol. Unknown codes from a newer peer decode as [`ErrorCode::Unknown`]
//! instead of failing the whole frame.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a piece of identifier text (key, server name, user id, channel id, message id) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The input was empty.
    #[error("empty input")]
    Empty,
    /// The input is longer than the form allows.
    #[error("too long: {len} bytes, at most {max}")]
    TooLong {
        /// Length of the input in bytes.
        len: usize,
        /// Maximum allowed length.
        max: usize,
    },
    /// A key or signature had the wrong number of hex digits.
    #[error("expected {expected} lowercase hex digits, got {got} characters")]
    WrongLength {
        /// Expected number of characters.
        expected: usize,
        /// Number of characters found.
        got: usize,
    },
    /// A key contained something other than `0-9a-f` (uppercase hex is not canonical).
    #[error("not lowercase hex")]
    NotLowercaseHex,
    /// 32 bytes that are not a valid Ed25519 public key (not a curve point, or of small order).
    #[error("not a valid Ed25519 public key")]
    InvalidKey,
    /// A user id or channel id lacked its `@server` part.
    #[error("missing '@' separator")]
    MissingAt,
    /// A channel id did not start with `#`.
    #[error("channel id must start with '#'")]
    MissingHash,
    /// A decimal number was malformed (sign, leading zero, non-digit, overflow) or zero.
    #[error("invalid number: {0}")]
    InvalidNumber(&'static str),
    /// A server name's host part was rejected; the text says why.
    #[error("invalid server name: {0}")]
    InvalidServerName(&'static str),
    /// A port was malformed, zero or above 65535.
    #[error("invalid port")]
    InvalidPort,
}

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident => $text:literal, )*) => {
        /// A protocol error code (spec `errors.md`). Encoded as its snake_case string.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
            /// A code this implementation does not know (sent by a newer peer).
            Unknown,
        }

        impl ErrorCode {
            /// Every known code, in spec order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The wire string of this code.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( ErrorCode::$variant => $text, )*
                    ErrorCode::Unknown => "unknown",
                }
            }

            /// Parses a wire string; anything unrecognised is [`ErrorCode::Unknown`].
            pub fn from_wire(s: &str) -> ErrorCode {
                match s {
                    $( $text => ErrorCode::$variant, )*
                    _ => ErrorCode::Unknown,
                }
            }
        }
    };
}

error_codes! {
    /// The frame was not valid MessagePack or did not match the operation's schema.
    Malformed => "malformed",
    /// The operation name is not known to this server (the connection stays up).
    UnknownOp => "unknown_op",
    /// A field value is out of range or otherwise invalid.
    InvalidArgument => "invalid_argument",
    /// The frame or a field exceeded a size limit.
    TooLarge => "too_large",
    /// The request needs an authenticated session.
    Unauthenticated => "unauthenticated",
    /// The authentication proof was wrong (bad signature, wrong nonce, wrong server).
    AuthFailed => "auth_failed",
    /// The client did not authenticate within the authentication timeout.
    AuthTimeout => "auth_timeout",
    /// The session is already authenticated.
    AlreadyAuthenticated => "already_authenticated",
    /// This server does not accept new users (policy `closed`, or `invite` without a valid token).
    RegistrationClosed => "registration_closed",
    /// A signature on uploaded or relayed data did not verify.
    BadSignature => "bad_signature",
    /// The caller lacks the permission the operation needs.
    Forbidden => "forbidden",
    /// The caller is banned from the channel.
    Banned => "banned",
    /// The referenced user, channel, message, role or invite does not exist (or is not visible).
    NotFound => "not_found",
    /// The operation conflicts with current state (already a member, duplicate key id, ...).
    Conflict => "conflict",
    /// The invite code does not exist or was revoked.
    InviteInvalid => "invite_invalid",
    /// The invite has expired.
    InviteExpired => "invite_expired",
    /// The invite has reached its maximum number of uses.
    InviteExhausted => "invite_exhausted",
    /// The recipient has no one-time or fallback key left.
    NoKeys => "no_keys",
    /// The recipient's offline queue is full.
    QueueFull => "queue_full",
    /// Too many requests; retry after `retry_after_ms`.
    RateLimited => "rate_limited",
    /// Too many connections (in total or from this address).
    TooManyConnections => "too_many_connections",
    /// The peer speaks an unsupported protocol version.
    UnsupportedVersion => "unsupported_version",
    /// The remote server could not be reached or refused the request.
    FederationUnavailable => "federation_unavailable",
    /// Federation: the frame's signature does not verify against the origin's key.
    FedBadSignature => "fed_bad_signature",
    /// Federation: the origin's key is unknown or differs from what discovery returned.
    FedUnknownKey => "fed_unknown_key",
    /// Federation: the frame is addressed to another server.
    FedWrongDestination => "fed_wrong_destination",
    /// Federation: the frame's timestamp is outside the accepted window.
    FedStale => "fed_stale",
    /// Federation: a frame exceeded the size limit.
    FedTooLarge => "fed_too_large",
    /// The server is shutting down.
    ShuttingDown => "shutting_down",
    /// An internal error; details are in the server's log, never on the wire.
    Internal => "internal",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
        Ok(ErrorCode::from_wire(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_tolerated() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_wire(code.as_str()), *code);
            let bytes = rmp_serde::to_vec_named(code).expect("encode");
            let back: ErrorCode = rmp_serde::from_slice(&bytes).expect("decode");
            assert_eq!(back, *code);
        }
        let bytes = rmp_serde::to_vec_named("from_the_future").expect("encode");
        let back: ErrorCode = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(back, ErrorCode::Unknown);
    }
}
