//! Helpers shared by the waf plugin's native tests.
use waf::request::Transaction;

/// A request to `target` (path and optional `?query`) with these headers and body.
pub fn req(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Transaction {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    Transaction {
        method: method.into(),
        path,
        query,
        protocol: "HTTP/1.1".into(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect(),
        body: body.map(<[u8]>::to_vec),
        client_addr: "192.0.2.7:51000".into(),
        unique_id: "a1b2c3d4e5f6".into(),
    }
}
