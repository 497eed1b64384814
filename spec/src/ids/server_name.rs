//! Server names: a lowercase DNS name or IP literal with an optional port (spec `identity.md` §Server names).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::IdError;

/// Maximum length of a server name's text form, port included.
pub const MAX_SERVER_NAME_LEN: usize = 255;

/// A homeserver's name: `example.org`, `example.org:8448`, `192.0.2.1`, `[2001:db8::1]:7101`.
///
/// Canonical form: DNS labels of `a-z`, `0-9` and `-` (1–63 characters, not starting or ending
/// with `-`), no trailing dot, at most 253 characters; or an IPv4 address in dotted decimal
/// without leading zeros; or an IPv6 address in brackets in RFC 5952 form; then optionally `:`
/// and a decimal port 1–65535 without leading zeros.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerName {
    text: String,
    host_len: usize,
}

impl ServerName {
    /// The host part (for an IPv6 literal, with its brackets).
    pub fn host(&self) -> &str {
        &self.text[..self.host_len]
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.text
            .get(self.host_len + 1..)
            .and_then(|p| p.parse().ok())
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn check_dns_host(host: &str) -> Result<(), IdError> {
    use IdError::InvalidServerName as Bad;
    if host.len() > 253 {
        return Err(Bad("host longer than 253 characters"));
    }
    if host.ends_with('.') {
        return Err(Bad("trailing dot"));
    }
    let mut all_numeric = true;
    for label in host.split('.') {
        if label.is_empty() {
            return Err(Bad("empty label"));
        }
        if label.len() > 63 {
            return Err(Bad("label longer than 63 characters"));
        }
        if label.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(Bad("uppercase letters (the canonical form is lowercase)"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(Bad("only a-z, 0-9, '-' and '.' are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(Bad("label starts or ends with '-'"));
        }
        all_numeric &= label.bytes().all(|b| b.is_ascii_digit());
    }
    if all_numeric {
        // Looks like an IPv4 address: it must be one, in canonical form.
        match host.parse::<Ipv4Addr>() {
            Ok(ip) if ip.to_string() == host => {}
            _ => return Err(Bad("numeric host that is not a canonical IPv4 address")),
        }
    }
    Ok(())
}

impl FromStr for ServerName {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        use IdError::InvalidServerName as Bad;
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > MAX_SERVER_NAME_LEN {
            return Err(IdError::TooLong {
                len: s.len(),
                max: MAX_SERVER_NAME_LEN,
            });
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let end = rest
                .find(']')
                .ok_or(Bad("unterminated '[' in IPv6 literal"))?;
            let ip_text = &rest[..end];
            let ip: Ipv6Addr = ip_text.parse().map_err(|_| Bad("invalid IPv6 literal"))?;
            if ip.to_string() != ip_text {
                return Err(Bad("IPv6 literal not in RFC 5952 form"));
            }
            let after = &rest[end + 1..];
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(Bad("junk after IPv6 literal"))?),
            };
            (&s[..end + 2], port)
        } else {
            let mut parts = s.splitn(2, ':');
            let host = parts.next().unwrap_or_default();
            let port = parts.next();
            if port.is_some_and(|p| p.contains(':')) {
                return Err(Bad("IPv6 literals must be in brackets"));
            }
            if host.is_empty() {
                return Err(Bad("empty host"));
            }
            check_dns_host(host)?;
            (host, port)
        };
        if let Some(p) = port {
            let n = super::parse_canonical_u64(p).map_err(|_| IdError::InvalidPort)?;
            if n == 0 || n > u64::from(u16::MAX) {
                return Err(IdError::InvalidPort);
            }
        }
        Ok(ServerName {
            text: s.to_owned(),
            host_len: host.len(),
        })
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerName({})", self.text)
    }
}

super::serde_via_str!(ServerName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_canonical_names() {
        for ok in [
            "example.org",
            "example.org:8448",
            "node1.mobium.test:7101",
            "localhost",
            "192.0.2.1",
            "192.0.2.1:8448",
            "[::1]",
            "[2001:db8::1]:7101",
            "a-b.c",
        ] {
            let n: ServerName = ok.parse().unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(n.to_string(), ok);
        }
        let n: ServerName = "alpha.test:7101".parse().expect("valid");
        assert_eq!((n.host(), n.port()), ("alpha.test", Some(7101)));
    }

    #[test]
    fn rejects_non_canonical_names() {
        for bad in [
            "",
            "Example.org",
            "example.org.",
            "exa mple.org",
            "-example.org",
            "example-.org",
            "a..b",
            "example.org:0",
            "example.org:65536",
            "example.org:08448",
            "example.org:",
            "example.org:+1",
            "::1",
            "[::0001]",
            "[::1",
            "[::1]x",
            "01.2.3.4",
            "1.2.3",
            "caf\u{e9}.org",
            ":8448",
        ] {
            assert!(bad.parse::<ServerName>().is_err(), "accepted {bad:?}");
        }
        let long = format!("{}.org", "a".repeat(64));
        assert!(long.parse::<ServerName>().is_err());
    }
}
