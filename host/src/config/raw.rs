//! The TOML schema as serde sees it. Spans are kept where validation needs to point back
//! into the file; unknown keys are rejected by serde with their position.

use super::units::{DurationStr, SizeStr};
use super::{
    ConfigError, Isolation, ListenerProtocol, OnError, Oversize, ProxyProtocolVersion,
    UpstreamProtocol,
};
use serde::Deserialize;
use serde_spanned::Spanned;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub runtime: RawRuntime,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<RawListener>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RawRoute>,
    #[serde(default, rename = "upstream")]
    pub upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default, rename = "plugin")]
    pub plugins: BTreeMap<String, RawPlugin>,
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub log: RawLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRuntime {
    pub workers: Option<Spanned<usize>>,
    pub shutdown_grace: Option<DurationStr>,
    pub watch: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub listen: Spanned<String>,
    pub token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub format: Option<super::LogFormat>,
    pub level: Option<String>,
    pub access: Option<String>,
    pub access_format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub name: Spanned<String>,
    pub listen: Spanned<String>,
    #[serde(default)]
    pub protocol: ListenerProtocol,
    pub header_read_timeout: Option<DurationStr>,
    pub max_header_size: Option<SizeStr>,
    pub upstream: Option<Spanned<String>>,
    pub sni: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub default_upstream: Option<Spanned<String>>,
    pub certificates: Option<Spanned<Vec<RawCertificate>>>,
    pub client_ca: Option<Spanned<String>>,
    pub handshake_timeout: Option<DurationStr>,
    pub preread_timeout: Option<DurationStr>,
    pub idle_timeout: Option<DurationStr>,
    pub max_connections: Option<Spanned<usize>>,
    pub accept_proxy_protocol: Option<bool>,
    #[serde(default)]
    pub plugins: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertificate {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub listener: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub path_prefix: Option<Spanned<String>>,
    pub upstream: Spanned<String>,
    #[serde(default)]
    pub plugins: Vec<Spanned<String>>,
    pub cache: Option<RawCache>,
    pub max_body: Option<Spanned<SizeStr>>,
    pub oversize: Option<Oversize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    pub max_size: Option<Spanned<SizeStr>>,
    pub max_object_size: Option<Spanned<SizeStr>>,
    pub lock_timeout: Option<DurationStr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub endpoints: Spanned<Vec<Spanned<RawEndpoint>>>,
    pub balancer: Option<Spanned<String>>,
    pub hash_key: Option<Spanned<String>>,
    pub sticky: Option<RawSticky>,
    pub retries: Option<u32>,
    pub retry_budget: Option<Spanned<f64>>,
    pub max_conns: Option<Spanned<u32>>,
    pub queue_timeout: Option<DurationStr>,
    pub slow_start: Option<DurationStr>,
    pub passive: Option<RawPassive>,
    pub health: Option<Spanned<RawHealth>>,
    pub connect_timeout: Option<DurationStr>,
    pub response_timeout: Option<DurationStr>,
    pub idle_timeout: Option<DurationStr>,
    pub max_idle: Option<usize>,
    pub tls: Option<Spanned<RawUpstreamTls>>,
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    pub protocol: Option<Spanned<UpstreamProtocol>>,
}

/// An endpoint: `"IP:PORT"` or `{ address = "IP:PORT", weight = 3, drain = true }`.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "an address \"IP:PORT\" or a table { address = \"IP:PORT\", weight = N, drain = BOOL }"
)]
pub(super) enum RawEndpoint {
    Address(String),
    Table(RawEndpointTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEndpointTable {
    pub address: String,
    pub weight: Option<u32>,
    pub drain: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSticky {
    pub cookie: String,
    pub ttl: Option<DurationStr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPassive {
    pub max_fails: Option<u32>,
    pub fail_timeout: Option<DurationStr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub expect: Option<Spanned<String>>,
    pub interval: Option<DurationStr>,
    pub timeout: Option<DurationStr>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    pub host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstreamTls {
    pub server_name: Option<Spanned<String>>,
    pub ca: Option<Spanned<String>>,
    pub verify: Option<Spanned<bool>>,
    pub client_cert: Option<Spanned<String>>,
    pub client_key: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugin {
    pub wasm: Spanned<String>,
    pub config: Option<Spanned<toml::Value>>,
    pub on_error: Option<OnError>,
    pub isolation: Option<Isolation>,
    pub timeout: Option<DurationStr>,
    pub memory_limit: Option<Spanned<SizeStr>>,
    pub pool_size: Option<usize>,
    #[serde(default)]
    pub files: Vec<Spanned<String>>,
}

impl RawConfig {
    /// Parses TOML `text` from `file`, reporting the failing key's path and position.
    pub fn parse(text: &str, file: &Path) -> Result<RawConfig, ConfigError> {
        let de = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::at(file, text, e.span(), "", e.message().trim()))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::at(
                file,
                text,
                inner.span(),
                if key == "." { String::new() } else { key },
                inner.message().trim(),
            )
        })
    }
}
