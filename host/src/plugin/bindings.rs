//! Host-side bindings generated from `wit/plugin.wit`: the `filter` world at the top level,
//! the `connection-filter` world in [`connection`].

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
