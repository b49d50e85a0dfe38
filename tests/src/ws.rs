//! WebSocket for the tests: an echo server (tokio-tungstenite) that records each handshake
//! request, and a client round trip that checks text, binary and a large message.

use crate::l4::{Conn, TcpBackend};
use futures_util::{SinkExt, StreamExt};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

pub use tokio_tungstenite::WebSocketStream;

/// A handshake request as the WebSocket server saw it.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The request target.
    pub uri: String,
    /// The request headers.
    pub headers: http::HeaderMap,
}

impl Handshake {
    /// A header's value as text, or "" when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Recorded handshakes.
pub type Handshakes = Arc<Mutex<Vec<Handshake>>>;

/// Serves one WebSocket connection on `stream`: records the handshake in `seen`, then echoes
/// text and binary messages until the client closes.
#[allow(clippy::result_large_err)] // tungstenite's callback signature
pub async fn serve_echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S, seen: Handshakes) {
    let callback = move |req: &Request, resp: Response| {
        seen.lock().unwrap().push(Handshake {
            uri: req.uri().to_string(),
            headers: req.headers().clone(),
        });
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if msg.is_close() {
            break;
        }
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            return;
        }
    }
    let _ = ws.close(None).await;
}

/// A plain-TCP WebSocket echo server.
pub struct WsBackend {
    /// The TCP side.
    pub tcp: TcpBackend,
    /// Handshakes seen so far.
    pub handshakes: Handshakes,
}

impl WsBackend {
    /// Starts a WebSocket echo server on 127.0.0.1.
    pub async fn start(name: &str) -> WsBackend {
        let handshakes: Handshakes = Arc::new(Mutex::new(Vec::new()));
        let seen = handshakes.clone();
        let tcp = TcpBackend::start_with(
            name,
            false,
            Arc::new(move |c: Conn| Box::pin(serve_echo(c.stream, seen.clone()))),
        )
        .await;
        WsBackend { tcp, handshakes }
    }

    /// The handshakes seen so far.
    pub fn handshakes(&self) -> Vec<Handshake> {
        self.handshakes.lock().unwrap().clone()
    }
}

/// Opens a WebSocket to `url` (e.g. `ws://chat.example.com/chat`; the host part becomes the
/// Host header) over an already connected `stream`, within 10 s.
pub async fn client<S: AsyncRead + AsyncWrite + Unpin>(
    url: &str,
    stream: S,
) -> Result<WebSocketStream<S>, String> {
    match tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(url, stream),
    )
    .await
    {
        Ok(Ok((ws, _resp))) => Ok(ws),
        Ok(Err(e)) => Err(format!("websocket handshake: {e}")),
        Err(_) => Err("websocket handshake timed out".into()),
    }
}

/// Sends a text, a binary and a 1 MiB binary message and checks each comes back unchanged,
/// then closes cleanly. Bounded by 20 s.
pub async fn echo_round_trip<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) {
    let big = crate::l4::pattern(1 << 20, 7);
    let messages = vec![
        Message::text("hello through maitred"),
        Message::binary(vec![0u8, 1, 2, 0xff, 0xfe]),
        Message::binary(big),
    ];
    let fut = async {
        for msg in messages {
            ws.send(msg.clone()).await.expect("send");
            let back = loop {
                match ws.next().await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(m)) => break m,
                    other => panic!("no echo: {other:?}"),
                }
            };
            assert!(back == msg, "echo differs ({} bytes sent)", msg.len());
        }
        ws.close(None).await.expect("close");
        // The server answers the close; the stream then ends.
        while let Some(m) = ws.next().await {
            if m.is_err() {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("websocket round trip timed out");
}
