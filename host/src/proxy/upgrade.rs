//! Protocol upgrades (WebSocket and any other `Upgrade:` protocol) over HTTP/1.1.
//!
//! An upgrade handshake is an ordinary request to the proxy: it is routed and runs through
//! the route's plugins like any other. `Connection` and `Upgrade` are hop-by-hop, so the
//! request path strips them and [`Requested::restore`] puts them back for the upstream. If
//! the upstream answers `101 Switching Protocols`, [`Requested::accept`] spawns a task that
//! waits for both sides to switch and then copies bytes both ways until either side closes;
//! the upstream connection is not pooled again.

use crate::upstream::UpstreamBody;
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// A client request that asks to switch protocols.
pub struct Requested {
    /// Resolves to the client connection once the 101 response has been written.
    client: OnUpgrade,
    /// The `Upgrade` header the client sent (`websocket`).
    protocol: HeaderValue,
}

impl Requested {
    /// If `req` is an HTTP/1.1 upgrade request (`Connection: upgrade` and `Upgrade: ...`),
    /// takes hold of its connection's upgrade.
    pub fn take(req: &mut Request<Incoming>) -> Option<Requested> {
        if req.version() != Version::HTTP_11 {
            return None;
        }
        let protocol = req.headers().get(UPGRADE)?.clone();
        let asks_to_upgrade = req.headers().get_all(CONNECTION).iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
            })
        });
        asks_to_upgrade.then(|| Requested {
            client: hyper::upgrade::on(req),
            protocol,
        })
    }

    /// Adds back the hop-by-hop headers that ask the upstream to switch protocols.
    pub fn restore(&self, headers: &mut HeaderMap) {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, self.protocol.clone());
    }

    /// If the upstream agreed to switch (101), starts piping the two connections and returns
    /// the protocol to announce to the client; otherwise the response is an ordinary one.
    pub fn accept(
        self,
        mut response: Response<UpstreamBody>,
    ) -> (Response<UpstreamBody>, Option<HeaderValue>) {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return (response, None);
        }
        let protocol = response
            .headers()
            .get(UPGRADE)
            .cloned()
            .unwrap_or(self.protocol);
        let upstream = hyper::upgrade::on(&mut response);
        tokio::spawn(pipe(self.client, upstream));
        (response, Some(protocol))
    }
}

/// Adds the hop-by-hop headers of a `101` response back for the client.
pub fn restore_response(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol);
}

/// Copies bytes both ways between the upgraded client and upstream connections.
async fn pipe(client: OnUpgrade, upstream: OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!("upgrade did not complete: {e}");
            return;
        }
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!("upgraded connection ended: {e}");
    }
}
