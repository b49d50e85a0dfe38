//! Black-box tests of maitred: a real proxy, real backends and clients on 127.0.0.1, real
//! WASM plugins built from `plugins/` and `tests/plugins/`.

mod admin;
mod balancer_plugins;
mod balancing;
mod cache;
mod cache_key_plugin;
mod check;
mod connection_plugins;
mod l4;
mod plugins;
mod proxying;
mod ratelimit;
mod reload;
mod routing;
mod smuggling;
mod tls;
mod waf;
mod websocket;
