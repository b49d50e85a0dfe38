//! Host-side bindings generated from `wit/plugin.wit`: the `filter` world at the top level,
//! the `connection-filter` world in [`connection`], the `balancer` world in [`balancer`].

wasmtime::component::bindgen!({
    path: "../wit",
    world: "filter",
    imports: { default: trappable },
    with: {
        "maitred:plugin/http.request": crate::plugin::state::RequestHandle,
        "maitred:plugin/http.response": crate::plugin::state::ResponseHandle,
    },
});

pub use maitred::plugin::http::DirectResponse;

/// The `connection-filter` world. Its `log` and `host` imports are the `filter` world's (one
/// implementation, linked once); only its exports and the `connection` types are its own.
pub mod connection {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "connection-filter",
        imports: { default: trappable },
        with: {
            "maitred:plugin/log": super::maitred::plugin::log,
            "maitred:plugin/host": super::maitred::plugin::host,
        },
    });
}

/// The `balancer` world. Its `log` and `host` imports are the `filter` world's and its
/// `connection-info` is the `connection-filter` world's (one type, one conversion); the
/// `balancing` interface with its read-only `request-info` resource is its own.
pub mod balancer {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "balancer",
        imports: { default: trappable },
        with: {
            "maitred:plugin/log": super::maitred::plugin::log,
            "maitred:plugin/host": super::maitred::plugin::host,
            "maitred:plugin/connection": super::connection::maitred::plugin::connection,
            "maitred:plugin/balancing.request-info": crate::plugin::state::BalanceRequestHandle,
        },
    });
}
