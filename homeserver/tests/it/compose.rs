//! `deploy/compose/community.yml` agrees with the server it runs: every `SC_*` key it sets is
//! a setting with a valid value (checked by the config loader itself, which refuses unknown
//! `SC_` keys), the published ports are the configured client (TCP) and federation (UDP) ports,
//! the data directory is a named volume, the health check is the image's, and coturn is
//! optional (a profile) with its configuration beside the file.
//!
//! YAML is read with `serde_norway`, a maintained fork of `serde_yaml` (archived, RUSTSEC-2024-0320;
//! `serde_yml` is flagged unsound, RUSTSEC-2025-0068), as a dev-dependency only: a hand-written
//! parser for "enough YAML" would be the thing under test instead of the file.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use mobium_homeserver::config;
use serde::Deserialize;

use crate::deploy::deploy_file;

#[derive(Debug, Deserialize)]
struct Compose {
    services: BTreeMap<String, Service>,
    #[serde(default)]
    volumes: BTreeMap<String, Option<serde_norway::Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Service {
    image: Option<String>,
    restart: Option<String>,
    environment: Option<Environment>,
    ports: Vec<String>,
    volumes: Vec<String>,
    healthcheck: Option<Healthcheck>,
    profiles: Vec<String>,
    network_mode: Option<String>,
}

/// Compose allows a map or a list of `KEY=value`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Environment {
    Map(BTreeMap<String, serde_norway::Value>),
    List(Vec<String>),
}

impl Environment {
    fn pairs(&self) -> Result<Vec<(String, String)>, String> {
        match self {
            Environment::Map(m) => m
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_norway::Value::String(s) => s.clone(),
                        serde_norway::Value::Number(n) => n.to_string(),
                        serde_norway::Value::Bool(b) => b.to_string(),
                        other => return Err(format!("{k}: unsupported value {other:?}")),
                    };
                    Ok((k.clone(), v))
                })
                .collect(),
            Environment::List(l) => l
                .iter()
                .map(|e| {
                    e.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .ok_or_else(|| format!("{e:?} is not KEY=value"))
                })
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Healthcheck {
    test: Vec<String>,
}

/// The `ENV` and `HEALTHCHECK ... CMD` of deploy/Containerfile (continuation lines joined).
fn containerfile() -> (Vec<(String, String)>, Vec<String>) {
    let text = std::fs::read_to_string(deploy_file("Containerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let mut env = Vec::new();
    let mut health = Vec::new();
    for line in joined.lines() {
        if let Some(rest) = line.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (k, v) = pair.split_once('=').expect("ENV KEY=value");
                env.push((k.to_owned(), v.to_owned()));
            }
        }
        if line.starts_with("HEALTHCHECK ") {
            let cmd = line.split_once("CMD ").expect("HEALTHCHECK ... CMD").1;
            health = serde_json::from_str(cmd.trim()).expect("exec-form CMD");
        }
    }
    (env, health)
}

/// Container port and protocol of a `HOST:CONTAINER[/proto]` mapping.
fn container_port(mapping: &str) -> Result<(u16, &str), String> {
    let (ports, proto) = mapping.split_once('/').unwrap_or((mapping, "tcp"));
    let container = ports.rsplit(':').next().unwrap_or(ports);
    container
        .parse()
        .map(|p| (p, proto))
        .map_err(|_| format!("port mapping {mapping:?}"))
}

/// Every check, on a compose file's text; the first disagreement as the error.
fn check(text: &str) -> Result<(), String> {
    let compose: Compose = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    let mobium = compose.services.get("mobium").ok_or("no mobium service")?;
    if !mobium
        .image
        .as_deref()
        .is_some_and(|i| i.contains("mobium"))
    {
        return Err(format!("mobium image {:?}", mobium.image));
    }
    if !matches!(mobium.restart.as_deref(), Some("unless-stopped" | "always")) {
        return Err(format!("mobium restart policy {:?}", mobium.restart));
    }

    // The environment the server sees: the image's ENV, then the compose file's.
    let (image_env, image_health) = containerfile();
    let set = mobium
        .environment
        .as_ref()
        .ok_or("mobium sets no environment")?
        .pairs()?;
    if let Some((k, _)) = set.iter().find(|(k, _)| !k.starts_with("SC_")) {
        return Err(format!(
            "{k} is not an SC_ setting (the server would ignore it)"
        ));
    }
    let mut env = image_env;
    env.extend(set);
    let config = config::load(None, env).map_err(|e| format!("mobium environment: {e}"))?;
    if config.host != IpAddr::V4(Ipv4Addr::UNSPECIFIED) {
        return Err(format!(
            "SC_HOST {} is not reachable through published ports",
            config.host
        ));
    }
    if config.server_name.is_none() {
        return Err("SC_SERVER_NAME is unset: the name would follow the port".into());
    }

    let published: Vec<(u16, &str)> = mobium
        .ports
        .iter()
        .map(|p| container_port(p))
        .collect::<Result<_, _>>()?;
    for (port, proto, what) in [
        (config.port, "tcp", "SC_PORT"),
        (config.fed_port, "udp", "SC_FED_PORT"),
    ] {
        if !published.contains(&(port, proto)) {
            return Err(format!(
                "{what} {port}/{proto} is not published: {:?}",
                mobium.ports
            ));
        }
    }
    if published.len() != 2 {
        return Err(format!("unexpected ports {:?}", mobium.ports));
    }

    let data_dir = config.data_dir.to_string_lossy().into_owned();
    let volume = mobium
        .volumes
        .iter()
        .find_map(|v| {
            let (source, target) = v.split_once(':')?;
            (target.split(':').next() == Some(data_dir.as_str())).then_some(source)
        })
        .ok_or_else(|| format!("no volume at SC_DATA_DIR {data_dir}"))?;
    if !compose.volumes.contains_key(volume) {
        return Err(format!(
            "volume {volume} is not declared (a named volume survives re-creation)"
        ));
    }

    let health = mobium
        .healthcheck
        .as_ref()
        .ok_or("mobium has no health check")?;
    let expected: Vec<String> = std::iter::once("CMD".to_owned())
        .chain(image_health)
        .collect();
    if health.test != expected {
        return Err(format!(
            "health check {:?}, the image's is {expected:?}",
            health.test
        ));
    }

    let coturn = compose.services.get("coturn").ok_or("no coturn service")?;
    if coturn.profiles != ["turn"] {
        return Err(format!(
            "coturn is optional: profiles {:?}",
            coturn.profiles
        ));
    }
    if coturn.restart.is_none() {
        return Err("coturn has no restart policy".into());
    }
    if coturn.network_mode.as_deref() != Some("host") && coturn.ports.is_empty() {
        return Err("coturn is unreachable: no ports and no host network".into());
    }
    // Its configuration is a file beside the compose file, and uses shared-secret credentials.
    let conf = coturn
        .volumes
        .iter()
        .find_map(|v| v.strip_suffix(":/etc/coturn/turnserver.conf:ro"))
        .ok_or("coturn mounts no turnserver.conf")?;
    let conf = deploy_file("compose").join(conf);
    let conf = std::fs::read_to_string(&conf).map_err(|e| format!("{}: {e}", conf.display()))?;
    if !conf.lines().any(|l| l.trim() == "use-auth-secret") {
        return Err("coturn.conf does not use shared-secret credentials".into());
    }
    Ok(())
}

#[test]
fn the_community_compose_file_agrees_with_the_settings_and_the_image() {
    let text = std::fs::read_to_string(deploy_file("compose/community.yml")).unwrap();
    check(&text).unwrap();

    // The check sees what it is meant to see.
    let broken = [
        (
            "SC_FED_PORT: \"8448\"",
            "SC_FED_PROT: \"8448\"",
            "unknown setting SC_FED_PROT",
        ),
        (
            "SC_PORT: \"8443\"",
            "SC_PORT: \"eighty\"",
            "invalid setting SC_PORT",
        ),
        (
            "\"8448:8448/udp\"",
            "\"8448:8449/udp\"",
            "SC_FED_PORT 8448/udp",
        ),
        (
            "- mobium-data:/data",
            "- mobium-data:/var/data",
            "no volume at SC_DATA_DIR",
        ),
        ("profiles: [\"turn\"]", "profiles: []", "coturn is optional"),
    ];
    for (from, to, expected) in broken {
        assert!(text.contains(from), "{from}");
        let err = check(&text.replace(from, to)).expect_err(to);
        assert!(err.contains(expected), "{to}: {err}");
    }
}
