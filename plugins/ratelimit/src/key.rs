//! What a limit counts by: the key parts from the config (`client_ip`, `header:NAME`...) and
//! the state key built from a request's values for them.

use maitred_sdk::{body, validate};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// What the key needs from a request; implemented by `maitred_sdk::Request` and by tests.
pub trait RequestView {
    /// `ip:port` (`[v6]:port` for IPv6).
    fn client_addr(&self) -> String;
    /// The method.
    fn method(&self) -> String;
    /// The path without the query.
    fn path(&self) -> String;
    /// The authority, if any.
    fn authority(&self) -> Option<String>;
    /// Every value of a header.
    fn header_all(&self, name: &str) -> Vec<Vec<u8>>;
}

/// One part of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// The client's IP address (IPv6 grouped by the key's `ipv6_prefix`).
    ClientIp,
    /// The path without the query.
    Path,
    /// The method.
    Method,
    /// The authority (`Host`), lowercase; missing when the request has none.
    Host,
    /// A request header's values (joined with `, `); missing when absent. Lowercase name.
    Header(String),
    /// A cookie's first value, as sent; missing when absent.
    Cookie(String),
}

impl Part {
    /// Parses `client_ip`, `path`, `method`, `host`, `header:NAME` or `cookie:NAME`.
    ///
    /// ```ignore
    /// assert_eq!(Part::parse("header:X-Api-Key"), Ok(Part::Header("x-api-key".into())));
    /// ```
    pub fn parse(spec: &str) -> Result<Part, String> {
        let part = match spec.split_once(':') {
            None => match spec {
                "client_ip" => Part::ClientIp,
                "path" => Part::Path,
                "method" => Part::Method,
                "host" => Part::Host,
                _ => return Err(unknown(spec)),
            },
            Some(("header", name)) => {
                validate::header_name(name).map_err(|e| format!("{spec:?}: {e}"))?;
                Part::Header(name.to_ascii_lowercase())
            }
            Some(("cookie", name)) => {
                if name.is_empty() || !name.bytes().all(is_token_byte) {
                    return Err(format!("{spec:?}: invalid cookie name"));
                }
                Part::Cookie(name.to_string())
            }
            Some(_) => return Err(unknown(spec)),
        };
        Ok(part)
    }

    /// This part's value for `req`, or `None` when the request does not have it.
    fn value(&self, req: &dyn RequestView, ipv6_prefix: u8) -> Option<String> {
        match self {
            Part::ClientIp => Some(client_ip(&req.client_addr(), ipv6_prefix)),
            Part::Path => Some(req.path()),
            Part::Method => Some(req.method()),
            Part::Host => req.authority().map(|a| a.to_ascii_lowercase()),
            Part::Header(name) => {
                let values = req.header_all(name);
                (!values.is_empty()).then(|| {
                    values
                        .iter()
                        .map(|v| String::from_utf8_lossy(v))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
            }
            Part::Cookie(name) => body::cookies(req.header_all("cookie"))
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v),
        }
    }

    /// The part's name in state keys.
    fn label(&self) -> String {
        match self {
            Part::ClientIp => "ip".into(),
            Part::Path => "path".into(),
            Part::Method => "method".into(),
            Part::Host => "host".into(),
            Part::Header(name) => format!("h:{name}"),
            Part::Cookie(name) => format!("c:{name}"),
        }
    }
}

fn unknown(spec: &str) -> String {
    format!(
        "unknown key part {spec:?}; use \"client_ip\", \"path\", \"method\", \"host\", \
         \"header:NAME\" or \"cookie:NAME\""
    )
}

/// RFC 9110 token characters (cookie names are tokens).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What a key is made of, and what to do when a request lacks a part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// The parts, in order, each at most once.
    pub parts: Vec<Part>,
    /// IPv6 clients are grouped by this prefix length (128: one address each).
    pub ipv6_prefix: u8,
    /// Whether requests missing a part share one bucket (`true`) or pass unlimited.
    pub missing_shared: bool,
}

/// Longest state key sent as is; longer ones are hashed (the host cuts keys at 256 bytes).
const MAX_PLAIN_KEY: usize = 200;

impl KeySpec {
    /// The state key for `req`: `label=value` per part, joined with `|`, values escaped so no
    /// value can forge another part (`%`, `|`, bytes outside visible ASCII as `%XX`); a key
    /// over 200 bytes is replaced by `#` and a 128-bit hash of it. `None` when a part is
    /// missing and missing parts pass.
    ///
    /// ```ignore
    /// // key = ["client_ip", "path"]
    /// assert_eq!(spec.build(&req).as_deref(), Some("ip=10.0.0.7|path=/login"));
    /// ```
    pub fn build(&self, req: &dyn RequestView) -> Option<String> {
        let mut key = String::new();
        for part in &self.parts {
            if !key.is_empty() {
                key.push('|');
            }
            key.push_str(&part.label());
            match part.value(req, self.ipv6_prefix) {
                Some(value) => {
                    key.push('=');
                    escape_into(&mut key, &value);
                }
                // `!` and no value: differs from every present value, the empty one too.
                None if self.missing_shared => key.push('!'),
                None => return None,
            }
        }
        if key.len() > MAX_PLAIN_KEY {
            key = format!(
                "#{:016x}{:016x}",
                fnv1a(&key, FNV_OFFSET),
                fnv1a(&key, !FNV_OFFSET)
            );
        }
        Some(key)
    }
}

/// Appends `value` with `%`, `|` and bytes outside visible ASCII percent-encoded.
fn escape_into(key: &mut String, value: &str) {
    for &b in value.as_bytes() {
        if b.is_ascii_graphic() && b != b'%' && b != b'|' {
            key.push(char::from(b));
        } else {
            key.push_str(&format!("%{b:02X}"));
        }
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// 64-bit FNV-1a of `text` from `offset` (two offsets give a 128-bit hash).
fn fnv1a(text: &str, offset: u64) -> u64 {
    text.bytes().fold(offset, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The client's IP from `ip:port`, IPv4-mapped IPv6 as IPv4, other IPv6 addresses cut to
/// `ipv6_prefix` bits and written `addr/prefix` (just `addr` at 128). An address that does
/// not parse is used as it is.
pub fn client_ip(addr: &str, ipv6_prefix: u8) -> String {
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        return addr.to_string();
    };
    match addr.ip().to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) if ipv6_prefix >= 128 => v6.to_string(),
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(ipv6_prefix))
                .unwrap_or(0);
            format!("{}/{ipv6_prefix}", Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request made of fixed values.
    #[derive(Default)]
    struct Fake {
        addr: String,
        method: String,
        path: String,
        authority: Option<String>,
        headers: Vec<(String, Vec<u8>)>,
    }

    impl RequestView for Fake {
        fn client_addr(&self) -> String {
            self.addr.clone()
        }
        fn method(&self) -> String {
            self.method.clone()
        }
        fn path(&self) -> String {
            self.path.clone()
        }
        fn authority(&self) -> Option<String> {
            self.authority.clone()
        }
        fn header_all(&self, name: &str) -> Vec<Vec<u8>> {
            self.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .collect()
        }
    }

    fn req(headers: &[(&str, &str)]) -> Fake {
        Fake {
            addr: "10.0.0.7:5555".into(),
            method: "GET".into(),
            path: "/login".into(),
            authority: Some("Example.COM".into()),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    fn spec(parts: &[&str], missing_shared: bool) -> KeySpec {
        KeySpec {
            parts: parts.iter().map(|p| Part::parse(p).unwrap()).collect(),
            ipv6_prefix: 64,
            missing_shared,
        }
    }

    #[test]
    fn parses_parts() {
        assert_eq!(Part::parse("client_ip"), Ok(Part::ClientIp));
        assert_eq!(
            Part::parse("header:X-Api-Key"),
            Ok(Part::Header("x-api-key".into()))
        );
        assert_eq!(
            Part::parse("cookie:Session"),
            Ok(Part::Cookie("Session".into()))
        );
        for bad in [
            "ip",
            "Client_IP",
            "header:",
            "header:a b",
            "cookie:",
            "cookie:a;b",
            "query:x",
            "",
        ] {
            assert!(Part::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(Part::parse("nope").unwrap_err().contains("header:NAME"));
    }

    #[test]
    fn builds_keys_from_parts() {
        let r = req(&[
            ("x-api-key", "k1"),
            ("cookie", "a=1; sid=\"s 1\""),
            ("x-multi", "a"),
            ("x-multi", "b"),
        ]);
        let key = |parts: &[&str]| spec(parts, false).build(&r);
        assert_eq!(key(&["client_ip"]).as_deref(), Some("ip=10.0.0.7"));
        assert_eq!(
            key(&["client_ip", "path"]).as_deref(),
            Some("ip=10.0.0.7|path=/login")
        );
        assert_eq!(
            key(&["method", "host"]).as_deref(),
            Some("method=GET|host=example.com")
        );
        assert_eq!(
            key(&["header:x-api-key"]).as_deref(),
            Some("h:x-api-key=k1")
        );
        assert_eq!(
            key(&["header:x-multi"]).as_deref(),
            Some("h:x-multi=a,%20b")
        );
        assert_eq!(key(&["cookie:sid"]).as_deref(), Some("c:sid=\"s%201\""));
        assert_eq!(key(&["cookie:a"]).as_deref(), Some("c:a=1"));
    }

    #[test]
    fn missing_parts_pass_or_share() {
        let r = req(&[("x-empty", "")]);
        assert_eq!(
            spec(&["client_ip", "header:x-api-key"], false).build(&r),
            None
        );
        assert_eq!(spec(&["cookie:sid"], false).build(&r), None);
        assert_eq!(
            spec(&["client_ip", "header:x-api-key"], true)
                .build(&r)
                .as_deref(),
            Some("ip=10.0.0.7|h:x-api-key!")
        );
        // Present but empty is a value.
        assert_eq!(
            spec(&["header:x-empty"], false).build(&r).as_deref(),
            Some("h:x-empty=")
        );
        let no_host = Fake {
            authority: None,
            ..req(&[])
        };
        assert_eq!(spec(&["host"], false).build(&no_host), None);
    }

    #[test]
    fn values_cannot_forge_parts() {
        let forged = req(&[("x-a", "1|h:x-b=2")]);
        let honest = req(&[("x-a", "1"), ("x-b", "2")]);
        let s = spec(&["header:x-a", "header:x-b"], true);
        assert_ne!(s.build(&forged), s.build(&honest));
        assert_eq!(
            s.build(&forged).as_deref(),
            Some("h:x-a=1%7Ch:x-b=2|h:x-b!")
        );
        let pct = req(&[("x-a", "%7C")]);
        assert_eq!(
            spec(&["header:x-a"], false).build(&pct).as_deref(),
            Some("h:x-a=%257C")
        );
    }

    #[test]
    fn long_keys_are_hashed() {
        let long = "x".repeat(300);
        let (a, b) = (
            req(&[("x-a", &long)]),
            req(&[("x-a", &(long.clone() + "y"))]),
        );
        let s = spec(&["header:x-a"], false);
        let (ka, kb) = (s.build(&a).unwrap(), s.build(&b).unwrap());
        assert_eq!(ka.len(), 33);
        assert!(ka.starts_with('#'));
        assert_ne!(ka, kb);
        assert_eq!(ka, s.build(&a).unwrap());
    }

    #[test]
    fn client_ips() {
        assert_eq!(client_ip("10.0.0.7:80", 64), "10.0.0.7");
        assert_eq!(client_ip("[::ffff:10.0.0.7]:80", 64), "10.0.0.7");
        assert_eq!(
            client_ip("[2001:db8:1:2:3:4:5:6]:80", 64),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_ip("[2001:db8:1:2:3:4:5:6]:80", 48),
            "2001:db8:1::/48"
        );
        assert_eq!(
            client_ip("[2001:db8:1:2:3:4:5:6]:80", 128),
            "2001:db8:1:2:3:4:5:6"
        );
        assert_eq!(client_ip("[2001:db8::1]:80", 0), "::/0");
        assert_eq!(client_ip("weird", 64), "weird");
    }
}
