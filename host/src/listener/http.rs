//! The HTTP listener: accepts TCP connections and serves HTTP/1.1 and HTTP/2 (h2c prior
//! knowledge) on each, handing every request to [`crate::proxy::handle`].

use crate::config::ListenerConfig;
use crate::proxy::{self, ConnectionContext};
use crate::runtime::server::Shared;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// One worker's side of an HTTP listener.
pub struct HttpListener {
    name: Arc<str>,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
}

impl HttpListener {
    /// Prepares the connection settings of listener `config`.
    pub fn new(config: &ListenerConfig, shared: Arc<Shared>) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(config.max_header_size.max(8192))
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(config.max_header_size as u32)
            .max_concurrent_streams(256)
            .keep_alive_interval(Some(Duration::from_secs(30)));
        HttpListener {
            name: Arc::from(config.name.as_str()),
            shared,
            builder: Arc::new(builder),
        }
    }
}

/// Accepts connections until the task is aborted.
pub async fn serve_http(listener: HttpListener, socket: TcpListener) {
    loop {
        let (stream, client) = match socket.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(listener = %listener.name, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let context = Arc::new(ConnectionContext::new(
            listener.shared.clone(),
            listener.name.clone(),
            client,
        ));
        let builder = listener.builder.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let context = context.clone();
                async move { Ok::<_, Infallible>(proxy::handle(&context, req).await) }
            });
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%client, "connection ended: {e}");
            }
        });
    }
}
