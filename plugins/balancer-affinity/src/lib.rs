//! maitred balancer plugin: session affinity. Each request goes to an endpoint chosen by a
//! hash of a key (a header, a cookie, the path, the client address, or on layer-4 upstreams
//! the TLS server name), so the same key keeps reaching the same endpoint.
//!
//! This is also the example of a custom balancing policy written with the SDK: a
//! [`BalancerPolicy`] is an `init` that reads the config and a `pick` that returns an index
//! into the endpoint list (or `None` to let the host balance), exported with
//! [`export_balancer!`].
//!
//! ```toml
//! [upstream.app]
//! endpoints = ["10.0.0.1:8080", { address = "10.0.0.2:8080", weight = 2 }]
//! balancer = "plugin:affinity"
//!
//! [plugin.affinity]
//! wasm = "target/wasm32-wasip2/release/balancer_affinity.wasm"
//! config = { header = "x-user", fallback = ["cookie:session", "client_ip"] }
//! ```
//!
//! The key is the first source that gives a non-empty value: `header`, then each `fallback`
//! in order (`header:NAME`, `cookie:NAME`, `path`, `client_ip`, `sni`). Sources that do not
//! apply are skipped: headers, cookies and the path exist only for HTTP requests, `sni` only
//! for connections (and only on `tls-passthrough` listeners). With no key the plugin answers
//! `None` and the host uses round-robin.
//!
//! The endpoint is chosen by weighted rendezvous (highest random weight) hashing over the
//! available endpoints (healthy, not draining, weight above 0): every endpoint gets a
//! pseudo-random score from `hash(key, endpoint address)`, scaled by its weight, and the
//! highest score wins. A key therefore stays on its endpoint for as long as that endpoint is
//! available; when it goes away only its keys move (spread over the others), and they come
//! back when it returns. Each endpoint gets a share of keys proportional to its weight.
use maitred_sdk::balancer::{BalancerPolicy, Endpoint, Target};
use maitred_sdk::{Config, export_balancer, validate};
use std::net::SocketAddr;

/// The config as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    header: Option<String>,
    #[serde(default)]
    fallback: Vec<String>,
}

/// Where a key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Header(String),
    Cookie(String),
    Path,
    ClientIp,
    Sni,
}

impl Source {
    fn parse(text: &str) -> Result<Source, String> {
        let source = match text.split_once(':') {
            Some(("header", name)) => {
                validate::header_name(name).map(|_| Source::Header(name.into()))?
            }
            Some(("cookie", name)) if !name.is_empty() => Source::Cookie(name.into()),
            None if text == "path" => Source::Path,
            None if text == "client_ip" => Source::ClientIp,
            None if text == "sni" => Source::Sni,
            _ => {
                return Err(format!(
                    "{text:?} is not a key source (header:NAME, cookie:NAME, path, client_ip or sni)"
                ));
            }
        };
        Ok(source)
    }

    /// The key this source gives for `target`, if it applies and is not empty.
    fn key(&self, target: &Target) -> Option<Vec<u8>> {
        let key = match (self, target) {
            (Source::Header(name), Target::Request(req)) => req.header(name)?,
            (Source::Cookie(name), Target::Request(req)) => req.cookie(name)?.into_bytes(),
            (Source::Path, Target::Request(req)) => req.path().into_bytes(),
            (Source::ClientIp, _) => target.client_ip().to_string().into_bytes(),
            (Source::Sni, Target::Connection(info)) => info.server_name.clone()?.into_bytes(),
            _ => return None,
        };
        (!key.is_empty()).then_some(key)
    }
}

/// The policy: key sources in the order they are tried.
struct Affinity {
    sources: Vec<Source>,
}

impl BalancerPolicy for Affinity {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.get()?;
        let mut sources = Vec::new();
        if let Some(name) = settings.header {
            validate::header_name(&name).map_err(|e| format!("header: {e}"))?;
            sources.push(Source::Header(name));
        }
        for (i, text) in settings.fallback.iter().enumerate() {
            sources.push(Source::parse(text).map_err(|e| format!("fallback[{i}]: {e}"))?);
        }
        if sources.is_empty() {
            return Err(
                "set `header` or `fallback`: without a key source nothing is sticky".into(),
            );
        }
        Ok(Affinity { sources })
    }

    fn pick(&self, target: &Target, endpoints: &[Endpoint]) -> Option<usize> {
        let key = self.sources.iter().find_map(|source| source.key(target))?;
        rendezvous(&key, endpoints)
    }
}

export_balancer!(Affinity);

/// Weighted rendezvous hashing: the index of the available endpoint with the highest
/// `weight / -ln(u)`, where `u` in (0, 1) is drawn from `hash(key, address)`. Each endpoint
/// wins a share of keys proportional to its weight; `None` when no endpoint is available.
fn rendezvous(key: &[u8], endpoints: &[Endpoint]) -> Option<usize> {
    let key_hash = fnv1a(key);
    let score = |e: &Endpoint| {
        let h = mix(key_hash ^ mix(address_hash(e.address)));
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        f64::from(e.weight) / -u.ln()
    };
    (0..endpoints.len())
        .filter(|&i| endpoints[i].is_available())
        .max_by(|&a, &b| score(&endpoints[a]).total_cmp(&score(&endpoints[b])))
}

/// FNV-1a, 64 bits: stable across builds and platforms (unlike `std`'s hashers).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The endpoint's identity for hashing: its IP's bytes and its port.
fn address_hash(address: SocketAddr) -> u64 {
    let ip = match address.ip() {
        std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
        std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    fnv1a(&[ip.as_slice(), &address.port().to_be_bytes()].concat())
}

/// The SplitMix64 finaliser: spreads FNV's weak low bits over all 64.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use maitred_sdk::balancer::Request;
    use maitred_sdk::connection::ConnectionInfo;

    fn endpoints(n: u16) -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint::new(SocketAddr::from(([10, 0, 0, 1], 8000 + i))))
            .collect()
    }

    fn policy(json: &str) -> Affinity {
        Affinity::init(Config::new(json)).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn user(name: &str) -> Target<'static> {
        Target::Request(Request::new("GET", "/").with_header("x-user", name))
    }

    #[test]
    fn a_key_keeps_its_endpoint() {
        let p = policy(r#"{"header": "x-user"}"#);
        let list = endpoints(5);
        let first = p.pick(&user("alice"), &list).unwrap();
        for _ in 0..100 {
            assert_eq!(p.pick(&user("alice"), &list), Some(first));
        }
        // The order of the list does not matter: the address is hashed, not the index.
        let mut reversed = list.clone();
        reversed.reverse();
        assert_eq!(p.pick(&user("alice"), &reversed), Some(4 - first));
    }

    #[test]
    fn keys_spread_in_proportion_to_weight() {
        let mut list = endpoints(3);
        list[2].weight = 2;
        let mut counts = [0usize; 3];
        for k in 0..8000 {
            counts[rendezvous(format!("user-{k}").as_bytes(), &list).unwrap()] += 1;
        }
        // Expected 2000, 2000, 4000.
        assert!(counts[0].abs_diff(2000) < 250, "{counts:?}");
        assert!(counts[1].abs_diff(2000) < 250, "{counts:?}");
        assert!(counts[2].abs_diff(4000) < 300, "{counts:?}");
    }

    #[test]
    fn only_the_keys_of_an_endpoint_that_goes_away_move() {
        let list = endpoints(5);
        let keys: Vec<String> = (0..2000).map(|k| format!("k{k}")).collect();
        let before: Vec<usize> = keys
            .iter()
            .map(|k| rendezvous(k.as_bytes(), &list).unwrap())
            .collect();
        for change in ["unhealthy", "draining", "weight 0"] {
            let mut changed = list.clone();
            match change {
                "unhealthy" => changed[3].healthy = false,
                "draining" => changed[3].draining = true,
                _ => changed[3].weight = 0,
            }
            for (k, &was) in keys.iter().zip(&before) {
                let now = rendezvous(k.as_bytes(), &changed).unwrap();
                assert_ne!(now, 3, "{change}: {k} still sent to endpoint 3");
                if was != 3 {
                    assert_eq!(now, was, "{change}: {k} moved from a healthy endpoint");
                }
            }
        }
        assert_eq!(rendezvous(b"k", &[]), None);
        let mut down = endpoints(2);
        down.iter_mut().for_each(|e| e.healthy = false);
        assert_eq!(rendezvous(b"k", &down), None);
    }

    #[test]
    fn sources_are_tried_in_order() {
        let p =
            policy(r#"{"header": "x-user", "fallback": ["cookie:session", "path", "client_ip"]}"#);
        let list = endpoints(16);
        let by_key = |key: &str| rendezvous(key.as_bytes(), &list);
        let req = || Request::new("GET", "/cart").with_client("192.0.2.7:5000".parse().unwrap());
        let pick = |r: Request<'static>| p.pick(&Target::Request(r), &list);
        let all = req()
            .with_header("x-user", "alice")
            .with_header("cookie", "session=s1");
        assert_eq!(pick(all), by_key("alice"));
        assert_eq!(
            pick(req().with_header("cookie", "a=1; session=s1")),
            by_key("s1")
        );
        // An empty header value counts as missing.
        assert_eq!(
            pick(
                req()
                    .with_header("x-user", "")
                    .with_header("cookie", "session=s1")
            ),
            by_key("s1")
        );
        assert_eq!(pick(req()), by_key("/cart"));
        let ip_only = policy(r#"{"fallback": ["client_ip"]}"#);
        assert_eq!(
            ip_only.pick(&Target::Request(req()), &list),
            by_key("192.0.2.7")
        );
        // No key at all: the host decides.
        assert_eq!(
            policy(r#"{"header": "x-user"}"#).pick(&Target::Request(req()), &list),
            None
        );
    }

    #[test]
    fn connections_use_the_client_address_and_sni() {
        let p = policy(r#"{"header": "x-user", "fallback": ["sni", "client_ip"]}"#);
        let list = endpoints(16);
        let mut info = ConnectionInfo {
            client_ip: "192.0.2.7".parse().unwrap(),
            client_port: 40000,
            listener: "edge".into(),
            server_name: Some("a.example.com".into()),
            alpn: vec![],
        };
        let pick = |info: &ConnectionInfo| p.pick(&Target::Connection(info.clone()), &list);
        assert_eq!(pick(&info), rendezvous(b"a.example.com", &list));
        info.server_name = None;
        assert_eq!(pick(&info), rendezvous(b"192.0.2.7", &list));
    }

    #[test]
    fn bad_configs_are_refused() {
        let err = |json: &str| Affinity::init(Config::new(json)).err().unwrap();
        assert!(err("{}").starts_with("set `header` or `fallback`"));
        assert!(err(r#"{"header": "x user"}"#).starts_with("header: invalid header name"));
        assert_eq!(
            err(r#"{"fallback": ["client_ip", "cookie:"]}"#),
            "fallback[1]: \"cookie:\" is not a key source (header:NAME, cookie:NAME, path, client_ip or sni)"
        );
        assert!(
            err(r#"{"fallback": ["header:a b"]}"#).starts_with("fallback[0]: invalid header name")
        );
        assert!(err(r#"{"headers": "x"}"#).starts_with("invalid config: unknown field"));
    }

    #[test]
    fn the_hash_is_stable() {
        // Pinned values: a change here would move every key of every deployment.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
