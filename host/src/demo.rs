//! Demo backends for `maitred demo`: tiny HTTP servers that say who they are, so `curl`
//! through the proxy shows routing, round-robin and header rewrites at once.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;

/// Starts one backend per address on a background thread. Each answers every request with
/// its own name and the request line and headers it received.
pub fn start_backends(addrs: &[SocketAddr]) -> std::io::Result<()> {
    let listeners = addrs
        .iter()
        .map(std::net::TcpListener::bind)
        .collect::<std::io::Result<Vec<_>>>()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("maitred-demo-backends".into())
        .spawn(move || {
            runtime.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for listener in listeners {
                    let _ = listener.set_nonblocking(true);
                    if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                        tasks.spawn(serve_backend(listener));
                    }
                }
                while tasks.join_next().await.is_some() {}
            })
        })?;
    Ok(())
}

async fn serve_backend(listener: tokio::net::TcpListener) {
    let name = listener
        .local_addr()
        .map_or_else(|_| "backend".to_string(), |a| format!("backend {a}"));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let name = name.clone();
                async move { Ok::<_, Infallible>(answer(&name, req)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(name: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut text = format!("hello from {name}\n{} {}\n", req.method(), req.uri());
    for (k, v) in req.headers() {
        text.push_str(&format!(
            "  {k}: {}\n",
            String::from_utf8_lossy(v.as_bytes())
        ));
    }
    Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .header("server", "maitred-demo-backend")
        .header("x-backend", name)
        .body(Full::new(Bytes::from(text)))
        .unwrap_or_default()
}
