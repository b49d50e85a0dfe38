//! What a plugin instance's store holds, and the host functions the plugin imports.
//!
//! During `on-request` the request head is *moved* into the store (no copy) as a
//! [`RequestView`]; the plugin reads and edits it through the `request` resource, and the proxy
//! moves it back out after the call. `on-response` does the same with a [`ResponseView`].
//! Only the value a plugin asks for is copied into its memory.

use super::bindings::maitred::plugin::{host, http, log};
use ::http::header::{HeaderName, HeaderValue};
use std::net::SocketAddr;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Marker type of the `request` resource: there is only ever the one request in the store.
pub struct RequestHandle;
/// Marker type of the `response` resource: there is only ever the one response in the store.
pub struct ResponseHandle;

/// The request head lent to a plugin for one `on-request` call.
pub struct RequestView {
    /// Method, URI and headers; edited in place by the plugin.
    pub parts: ::http::request::Parts,
    /// The client's address.
    pub client: SocketAddr,
    /// The upstream the request goes to; a plugin may replace it.
    pub upstream: std::sync::Arc<str>,
    /// Set when the plugin chose another upstream by name.
    pub upstream_override: Option<String>,
}

/// The response head lent to a plugin for one `on-response` call.
pub struct ResponseView {
    /// Status and headers; edited in place by the plugin.
    pub parts: ::http::response::Parts,
}

/// The data of one plugin instance's store.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The memory cap.
    pub(super) limits: StoreLimits,
    /// The plugin's name, for its log lines.
    pub(super) plugin: std::sync::Arc<str>,
    /// The request, during `on-request`.
    pub request: Option<RequestView>,
    /// The response, during `on-response`.
    pub response: Option<ResponseView>,
}

impl PluginState {
    /// A store's data for plugin `plugin` with a linear-memory cap of `memory_limit` bytes.
    pub(super) fn new(plugin: std::sync::Arc<str>, memory_limit: u64) -> Self {
        PluginState {
            // No files, no environment, no network, no inherited stdio.
            wasi: WasiCtx::builder().allow_tcp(false).allow_udp(false).build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_limit as usize)
                .trap_on_grow_failure(true)
                .build(),
            plugin,
            request: None,
            response: None,
        }
    }

    fn req(&mut self) -> wasmtime::Result<&mut RequestView> {
        self.request
            .as_mut()
            .ok_or_else(|| wasmtime::format_err!("the request is only available during on-request"))
    }

    fn resp(&mut self) -> wasmtime::Result<&mut ResponseView> {
        self.response.as_mut().ok_or_else(|| {
            wasmtime::format_err!("the response is only available during on-response")
        })
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

type Res<T> = wasmtime::Result<T>;

fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name {name:?}"))
}

fn header_value(value: &[u8]) -> Result<HeaderValue, String> {
    HeaderValue::from_bytes(value)
        .map_err(|_| "invalid header value (control characters are not allowed)".to_string())
}

/// Header accessors shared by the request and response resources.
mod headers {
    use super::*;
    use ::http::HeaderMap;

    pub fn get(map: &HeaderMap, name: &str) -> Option<Vec<u8>> {
        map.get(name).map(|v| v.as_bytes().to_vec())
    }
    pub fn get_all(map: &HeaderMap, name: &str) -> Vec<Vec<u8>> {
        map.get_all(name)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect()
    }
    pub fn names(map: &HeaderMap) -> Vec<String> {
        map.keys().map(|k| k.as_str().to_owned()).collect()
    }
    pub fn set(map: &mut HeaderMap, name: &str, value: &[u8]) -> Result<(), String> {
        map.insert(header_name(name)?, header_value(value)?);
        Ok(())
    }
    pub fn append(map: &mut HeaderMap, name: &str, value: &[u8]) -> Result<(), String> {
        map.append(header_name(name)?, header_value(value)?);
        Ok(())
    }
    pub fn remove(map: &mut HeaderMap, name: &str) {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            map.remove(name);
        }
    }
}

impl http::Host for PluginState {}

impl http::HostRequest for PluginState {
    fn method(&mut self, _: Resource<RequestHandle>) -> Res<String> {
        Ok(self.req()?.parts.method.as_str().to_owned())
    }
    fn path(&mut self, _: Resource<RequestHandle>) -> Res<String> {
        Ok(self.req()?.parts.uri.path().to_owned())
    }
    fn query(&mut self, _: Resource<RequestHandle>) -> Res<Option<String>> {
        Ok(self.req()?.parts.uri.query().map(str::to_owned))
    }
    fn authority(&mut self, _: Resource<RequestHandle>) -> Res<Option<String>> {
        let parts = &self.req()?.parts;
        Ok(crate::proxy::request_authority(parts).map(str::to_owned))
    }
    fn client_addr(&mut self, _: Resource<RequestHandle>) -> Res<String> {
        Ok(self.req()?.client.to_string())
    }
    fn upstream(&mut self, _: Resource<RequestHandle>) -> Res<String> {
        let r = self.req()?;
        Ok(r.upstream_override
            .clone()
            .unwrap_or_else(|| r.upstream.to_string()))
    }
    fn header(&mut self, _: Resource<RequestHandle>, name: String) -> Res<Option<Vec<u8>>> {
        Ok(headers::get(&self.req()?.parts.headers, &name))
    }
    fn header_all(&mut self, _: Resource<RequestHandle>, name: String) -> Res<Vec<Vec<u8>>> {
        Ok(headers::get_all(&self.req()?.parts.headers, &name))
    }
    fn header_names(&mut self, _: Resource<RequestHandle>) -> Res<Vec<String>> {
        Ok(headers::names(&self.req()?.parts.headers))
    }
    fn set_header(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
        value: Vec<u8>,
    ) -> Res<Result<(), String>> {
        Ok(headers::set(&mut self.req()?.parts.headers, &name, &value))
    }
    fn append_header(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
        value: Vec<u8>,
    ) -> Res<Result<(), String>> {
        Ok(headers::append(
            &mut self.req()?.parts.headers,
            &name,
            &value,
        ))
    }
    fn remove_header(&mut self, _: Resource<RequestHandle>, name: String) -> Res<()> {
        headers::remove(&mut self.req()?.parts.headers, &name);
        Ok(())
    }
    fn set_path(&mut self, _: Resource<RequestHandle>, path: String) -> Res<Result<(), String>> {
        let parts = &mut self.req()?.parts;
        let query = parts.uri.query().map(str::to_owned);
        Ok(crate::proxy::rewrite_path_and_query(
            &mut parts.uri,
            &path,
            query.as_deref(),
        ))
    }
    fn set_query(
        &mut self,
        _: Resource<RequestHandle>,
        query: Option<String>,
    ) -> Res<Result<(), String>> {
        let parts = &mut self.req()?.parts;
        let path = parts.uri.path().to_owned();
        Ok(crate::proxy::rewrite_path_and_query(
            &mut parts.uri,
            &path,
            query.as_deref(),
        ))
    }
    fn set_upstream(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
    ) -> Res<Result<(), String>> {
        self.req()?.upstream_override = Some(name);
        Ok(Ok(()))
    }
    fn drop(&mut self, _: Resource<RequestHandle>) -> Res<()> {
        Ok(())
    }
}

impl http::HostResponse for PluginState {
    fn status(&mut self, _: Resource<ResponseHandle>) -> Res<u16> {
        Ok(self.resp()?.parts.status.as_u16())
    }
    fn set_status(&mut self, _: Resource<ResponseHandle>, status: u16) -> Res<Result<(), String>> {
        let resp = self.resp()?;
        Ok(match ::http::StatusCode::from_u16(status) {
            Ok(s) => {
                resp.parts.status = s;
                Ok(())
            }
            Err(_) => Err(format!("invalid status {status}")),
        })
    }
    fn header(&mut self, _: Resource<ResponseHandle>, name: String) -> Res<Option<Vec<u8>>> {
        Ok(headers::get(&self.resp()?.parts.headers, &name))
    }
    fn header_all(&mut self, _: Resource<ResponseHandle>, name: String) -> Res<Vec<Vec<u8>>> {
        Ok(headers::get_all(&self.resp()?.parts.headers, &name))
    }
    fn header_names(&mut self, _: Resource<ResponseHandle>) -> Res<Vec<String>> {
        Ok(headers::names(&self.resp()?.parts.headers))
    }
    fn set_header(
        &mut self,
        _: Resource<ResponseHandle>,
        name: String,
        value: Vec<u8>,
    ) -> Res<Result<(), String>> {
        Ok(headers::set(&mut self.resp()?.parts.headers, &name, &value))
    }
    fn append_header(
        &mut self,
        _: Resource<ResponseHandle>,
        name: String,
        value: Vec<u8>,
    ) -> Res<Result<(), String>> {
        Ok(headers::append(
            &mut self.resp()?.parts.headers,
            &name,
            &value,
        ))
    }
    fn remove_header(&mut self, _: Resource<ResponseHandle>, name: String) -> Res<()> {
        headers::remove(&mut self.resp()?.parts.headers, &name);
        Ok(())
    }
    fn drop(&mut self, _: Resource<ResponseHandle>) -> Res<()> {
        Ok(())
    }
}

impl log::Host for PluginState {
    fn log(&mut self, level: log::Level, message: String) -> Res<()> {
        let plugin = &*self.plugin;
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }
}

impl host::Host for PluginState {
    fn random_u64(&mut self) -> Res<u64> {
        Ok(fastrand::u64(..))
    }
}
