//! Host-side bindings generated from `wit/plugin.wit` (world `filter`).

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
