//! Per-setting parsers and checks, shared by the TOML file and the `SC_*` environment.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use mobium_client_api::server::{ParseIpNetError, TrustedProxies};
use mobium_spec::ServerName;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{LogFormat, MAX_SECONDS, PeerSetting, Registration, ServerType, WellKnown};

/// A value as written, before it is checked.
enum Raw {
    Str(String),
    Int(i128),
    Float(f64),
    Bool(bool),
    Array,
    Table,
}

impl fmt::Display for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raw::Str(s) => write!(f, "{s:?}"),
            Raw::Int(n) => write!(f, "{n}"),
            Raw::Float(x) => write!(f, "{x}"),
            Raw::Bool(b) => write!(f, "{b}"),
            Raw::Array => f.write_str("an array"),
            Raw::Table => f.write_str("a table"),
        }
    }
}

impl<'de> de::Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Raw, E> {
                Ok(Raw::Str(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
                Ok(Raw::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
                Ok(Raw::Int(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
                Ok(Raw::Float(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
                Ok(Raw::Bool(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Raw::Array)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Raw::Table)
            }
        }
        d.deserialize_any(RawVisitor)
    }
}

/// Reads the raw value and applies `check`, turning its message into the error.
fn with<'de, D: Deserializer<'de>, T>(
    d: D,
    check: impl FnOnce(&Raw) -> Result<T, String>,
) -> Result<T, D::Error> {
    let raw: Raw = de::Deserialize::deserialize(d)?;
    check(&raw).map_err(de::Error::custom)
}

/// An integer in `lo..=hi` (`hi` must fit in `T`), from a number or a decimal string.
fn int<T: TryFrom<u64>>(raw: &Raw, what: &str, lo: u64, hi: u64) -> Result<T, String> {
    let n = match raw {
        Raw::Int(n) => u64::try_from(*n).ok(),
        Raw::Str(s) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse().ok()
            } else {
                None
            }
        }
        _ => None,
    };
    n.filter(|n| (lo..=hi).contains(n))
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| format!("expected {what} {lo}-{hi}, got {raw}"))
}

/// A string setting's text, or the standard error.
fn text<'a>(raw: &'a Raw, what: &str) -> Result<&'a str, String> {
    match raw {
        Raw::Str(s) => Ok(s),
        _ => Err(format!("expected {what}, got {raw}")),
    }
}

pub(super) fn host<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    with(d, |raw| {
        const WHAT: &str = "an IP address such as 127.0.0.1, 0.0.0.0 or ::";
        text(raw, WHAT)?
            .trim()
            .parse()
            .map_err(|_| format!("expected {WHAT}, got {raw}"))
    })
}

pub(super) fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    with(d, |raw| int(raw, "an integer", 0, u16::MAX.into()))
}

pub(super) fn server_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ServerName>, D::Error> {
    with(d, |raw| {
        const WHAT: &str =
            "a canonical server name such as chat.example.org or chat.example.org:8443";
        let s = text(raw, WHAT)?;
        if s.is_empty() {
            return Ok(None);
        }
        s.parse()
            .map(Some)
            .map_err(|e| format!("expected {WHAT}, got {raw} ({e})"))
    })
}

pub(super) fn data_dir<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    with(d, |raw| {
        const WHAT: &str = "a directory path";
        match text(raw, WHAT)? {
            "" => Err(format!("expected {WHAT}, got \"\"")),
            s => Ok(PathBuf::from(s)),
        }
    })
}

pub(super) fn database_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    with(d, |raw| {
        const WHAT: &str = "a URL starting with sqlite:, postgres:// or postgresql://";
        let s = text(raw, WHAT)?;
        if s.is_empty() {
            Ok(None)
        } else if ["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|p| s.starts_with(p))
        {
            Ok(Some(s.to_owned()))
        } else {
            // Show no more than the scheme: the rest may hold a password.
            let shown = match s.split_once(':') {
                Some((scheme, _)) => format!("{scheme}:..."),
                None => s.to_owned(),
            };
            Err(format!("expected {WHAT}, got {shown:?}"))
        }
    })
}

pub(super) fn server_type<'de, D: Deserializer<'de>>(d: D) -> Result<ServerType, D::Error> {
    with(d, |raw| match raw {
        Raw::Str(s) if s.trim().eq_ignore_ascii_case("community") => Ok(ServerType::Community),
        Raw::Str(s) if s.trim().eq_ignore_ascii_case("managed") => Ok(ServerType::Managed),
        _ => Err(format!("expected one of community, managed, got {raw}")),
    })
}

pub(super) fn nats_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    with(d, |raw| {
        const WHAT: &str = "a URL starting with nats:// or tls://";
        let s = text(raw, WHAT)?.trim();
        if s.is_empty() {
            Ok(None)
        } else if s.starts_with("nats://") || s.starts_with("tls://") {
            Ok(Some(s.to_owned()))
        } else {
            let shown = match s.split_once(':') {
                Some((scheme, _)) => format!("{scheme}:..."),
                None => s.to_owned(),
            };
            Err(format!("expected {WHAT}, got {shown:?}"))
        }
    })
}

pub(super) fn instance_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    with(d, |raw| match raw {
        Raw::Str(s) if s.trim().is_empty() => Ok(None),
        _ => int(raw, "an integer", 0, 1023).map(Some),
    })
}

pub(super) fn path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    with(d, |raw| {
        Ok(Some(text(raw, "a file path")?)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from))
    })
}

pub(super) fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    with(d, |raw| {
        let parsed = match raw {
            Raw::Bool(b) => Some(*b),
            Raw::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Some(true),
                "false" | "0" | "no" | "off" => Some(false),
                _ => None,
            },
            _ => None,
        };
        parsed.ok_or_else(|| format!("expected true or false, got {raw}"))
    })
}

pub(super) fn count_usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    with(d, |raw| int(raw, "an integer", 1, u32::MAX.into()))
}

pub(super) fn count_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    with(d, |raw| int(raw, "an integer", 1, u32::MAX.into()))
}

pub(super) fn message_size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    with(d, |raw| int(raw, "a size in bytes", 1024, 64 * 1024 * 1024))
}

pub(super) fn seconds_min_0<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    with(d, |raw| int(raw, "a number of seconds", 0, MAX_SECONDS))
}

pub(super) fn seconds_min_1<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    with(d, |raw| int(raw, "a number of seconds", 1, MAX_SECONDS))
}

pub(super) fn message_ttl<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    with(d, |raw| int(raw, "a number of seconds", 60, MAX_SECONDS))
}

pub(super) fn admin_token<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    // The token is never echoed.
    with(d, |raw| {
        let Raw::Str(s) = raw else {
            return Err("expected a string of at least 16 characters".to_owned());
        };
        let len = s.chars().count();
        if s.is_empty() {
            Ok(None)
        } else if s.trim() != s {
            Err("expected no whitespace at the start or end".to_owned())
        } else if len < 16 {
            Err(format!("expected at least 16 characters, got {len}"))
        } else {
            Ok(Some(s.clone()))
        }
    })
}

pub(super) fn registration<'de, D: Deserializer<'de>>(d: D) -> Result<Registration, D::Error> {
    with(d, |raw| {
        let parsed = match raw {
            Raw::Str(s) => s.parse().ok(),
            _ => None,
        };
        parsed.ok_or_else(|| format!("expected one of open, invite, closed, got {raw}"))
    })
}

pub(super) fn log<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    with(d, |raw| {
        const WHAT: &str = "a tracing filter such as info or info,mobium_homeserver=debug";
        let s = text(raw, WHAT)?;
        if s.trim().is_empty() {
            return Err(format!("expected {WHAT}, got {raw}"));
        }
        match tracing_subscriber::EnvFilter::try_new(s) {
            Ok(_) => Ok(s.to_owned()),
            Err(e) => Err(format!("expected {WHAT}, got {raw} ({e})")),
        }
    })
}

pub(super) fn log_format<'de, D: Deserializer<'de>>(d: D) -> Result<LogFormat, D::Error> {
    with(d, |raw| match raw {
        Raw::Str(s) if s.trim().eq_ignore_ascii_case("text") => Ok(LogFormat::Text),
        Raw::Str(s) if s.trim().eq_ignore_ascii_case("json") => Ok(LogFormat::Json),
        _ => Err(format!("expected one of text, json, got {raw}")),
    })
}

pub(super) fn optional_host<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    with(d, |raw| {
        const WHAT: &str = "an IP address such as 127.0.0.1, 0.0.0.0 or ::";
        let s = text(raw, WHAT)?.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse()
            .map(Some)
            .map_err(|_| format!("expected {WHAT}, got {raw}"))
    })
}

pub(super) fn socket_addrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    with(d, |raw| {
        const WHAT: &str = "comma-separated ip:port addresses such as 127.0.0.1:5353";
        let s = text(raw, WHAT)?;
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().map_err(|_| format!("expected {WHAT}, got {raw}")))
            .collect()
    })
}

pub(super) fn peers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PeerSetting>, D::Error> {
    with(d, |raw| {
        const WHAT: &str = "entries name,ip:port,key separated by ';'";
        let s = text(raw, WHAT)?;
        s.split(';')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|entry| {
                let parts: Vec<&str> = entry.split(',').map(str::trim).collect();
                let [name, addr, key] = parts.as_slice() else {
                    return Err(format!("expected {WHAT}, got {raw}"));
                };
                Ok(PeerSetting {
                    name: name
                        .parse()
                        .map_err(|e| format!("expected {WHAT}, got {raw} (server name: {e})"))?,
                    addr: addr
                        .parse()
                        .map_err(|_| format!("expected {WHAT}, got {raw} (address {addr:?})"))?,
                    key: key
                        .parse()
                        .map_err(|e| format!("expected {WHAT}, got {raw} (key: {e})"))?,
                })
            })
            .collect()
    })
}

pub(super) fn well_known<'de, D: Deserializer<'de>>(d: D) -> Result<WellKnown, D::Error> {
    with(d, |raw| match raw {
        Raw::Str(s) if s.eq_ignore_ascii_case("https") => Ok(WellKnown::Https),
        Raw::Str(s) if s.eq_ignore_ascii_case("http") => Ok(WellKnown::Http),
        Raw::Str(s) if s.eq_ignore_ascii_case("off") => Ok(WellKnown::Off),
        _ => Err(format!("expected one of https, http, off, got {raw}")),
    })
}

pub(super) fn trusted_proxies<'de, D: Deserializer<'de>>(d: D) -> Result<TrustedProxies, D::Error> {
    with(d, |raw| {
        const WHAT: &str = "comma-separated IP addresses or networks such as 127.0.0.1,10.0.0.0/8";
        text(raw, WHAT)?
            .parse()
            .map_err(|e: ParseIpNetError| format!("expected {WHAT}, got {raw} ({e})"))
    })
}

pub(super) fn optional_socket_addr<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    with(d, |raw| {
        const WHAT: &str = "an ip:port address such as 127.0.0.1:9100";
        let s = text(raw, WHAT)?.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse()
            .map(Some)
            .map_err(|_| format!("expected {WHAT}, got {raw}"))
    })
}
