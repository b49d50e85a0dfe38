//! What a plugin instance's store holds, and the host functions the plugin imports.
//!
//! During `on-request` the request head is *moved* into the store (no copy) as a
//! [`RequestView`]; the plugin reads and edits it through the `request` resource, and the proxy
//! moves it back out after the call. `on-response` does the same with a [`ResponseView`].
//! Only the value a plugin asks for is copied into its memory.
//!
//! During a balancer's `pick` on an HTTP request, the request head is *lent* instead: the
//! store holds a pointer to the caller's borrowed head for the duration of the call only
//! ([`LentRequest`]), and the read-only `request-info` resource reads through it.

use super::bindings::balancer::maitred::plugin::balancing;
use super::bindings::maitred::plugin::{host, http, log};
use ::http::header::{HeaderName, HeaderValue};
use std::net::SocketAddr;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

/// Marker type of the `request` resource: there is only ever the one request in the store.
pub struct RequestHandle;
/// Marker type of the `response` resource: there is only ever the one response in the store.
pub struct ResponseHandle;

/// Marker type of the balancer world's read-only `request-info` resource: there is only ever
/// the one request in the store, the one being balanced.
pub struct BalanceRequestHandle;

/// The request head a balancer reads during one `pick` call: a pointer to the caller's
/// borrowed `Parts`, set just before the call and cleared right after it (see
/// [`PluginState::lend_request`]).
pub(super) struct LentRequest {
    parts: std::ptr::NonNull<::http::request::Parts>,
    client: SocketAddr,
}

// SAFETY: `LentRequest` is only a shared borrow of `Parts` (which is `Sync`) in disguise; it is
// created and cleared on the thread making the call, and while it exists the store that holds
// it is used only by that call on that thread.
unsafe impl Send for LentRequest {}

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
    /// What the plugins asked of the route's cache (key, bypass, TTL).
    pub cache: crate::cache::PluginCacheControl,
    /// The whole request body, when the route buffered it for a plugin that asked for it.
    pub body: Option<bytes::Bytes>,
}

/// The response head lent to a plugin for one `on-response` call.
pub struct ResponseView {
    /// Status and headers; edited in place by the plugin.
    pub parts: ::http::response::Parts,
}

/// The data of one plugin instance's store.
pub struct PluginState {
    /// The WASI context; for a plugin without `files`, made on its first WASI call (see
    /// [`PluginState::new`]).
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    /// The memory cap.
    pub(super) limits: StoreLimits,
    /// The plugin's name, for its log lines.
    pub(super) plugin: std::sync::Arc<str>,
    /// The request, during `on-request`.
    pub request: Option<RequestView>,
    /// The response, during `on-response`.
    pub response: Option<ResponseView>,
    /// The request being balanced, during a balancer's `pick`.
    balance_request: Option<LentRequest>,
    /// The plugin's shared state, fetched from the registry on the first `state` call.
    shared: Option<std::sync::Arc<super::shared_state::SharedState>>,
}

impl PluginState {
    /// A store's data for plugin `plugin` with a linear-memory cap of `memory_limit` bytes,
    /// and the directories `files` readable at their own paths. Fails if one cannot be
    /// opened.
    ///
    /// Without `files`, the WASI context is not made here but on the plugin's first WASI call
    /// (`wasi_ctx`): building one seeds two random number generators and reads the clocks,
    /// a good part of the host's own cost of a fresh instance, and most plugins never call
    /// WASI at all (they use the `maitred:plugin` imports), so a `per-request` instance would
    /// pay it for nothing. Each store still gets a context of its own, never shared.
    pub(super) fn new(
        plugin: std::sync::Arc<str>,
        memory_limit: u64,
        files: &[std::path::PathBuf],
    ) -> wasmtime::Result<Self> {
        let wasi = if files.is_empty() {
            None
        } else {
            Some(wasi_ctx(files)?)
        };
        Ok(PluginState {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_limit as usize)
                .trap_on_grow_failure(true)
                .build(),
            plugin,
            request: None,
            response: None,
            balance_request: None,
            shared: None,
        })
    }

    /// The plugin's shared state (one registry lookup per store, not per call).
    pub(super) fn shared_state(&mut self) -> &super::shared_state::SharedState {
        let plugin = &self.plugin;
        self.shared
            .get_or_insert_with(|| super::shared_state::for_plugin(plugin))
    }

    /// Runs `call` with `parts` and `client` readable through the `request-info` resource,
    /// and makes them unreachable again before returning, whatever `call` does (a panic
    /// unwinds through here only after the pointer is cleared).
    pub(super) fn lend_request<R>(
        store: &mut wasmtime::Store<PluginState>,
        parts: &::http::request::Parts,
        client: SocketAddr,
        call: impl FnOnce(&mut wasmtime::Store<PluginState>) -> R,
    ) -> R {
        struct Clear<'s>(&'s mut wasmtime::Store<PluginState>);
        impl Drop for Clear<'_> {
            fn drop(&mut self) {
                self.0.data_mut().balance_request = None;
            }
        }
        store.data_mut().balance_request = Some(LentRequest {
            parts: std::ptr::NonNull::from(parts),
            client,
        });
        let guard = Clear(store);
        call(&mut *guard.0)
    }

    /// The request being balanced and its client.
    fn lent(&self) -> wasmtime::Result<(&::http::request::Parts, SocketAddr)> {
        let lent = self
            .balance_request
            .as_ref()
            .ok_or_else(|| wasmtime::format_err!("the request is only available during pick"))?;
        // SAFETY: the pointer was made from a `&Parts` that outlives the `lend_request` call
        // it was set in, and is cleared before that call returns or unwinds; this runs inside
        // it (a host function called by the plugin during `pick`).
        Ok((unsafe { lent.parts.as_ref() }, lent.client))
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
            ctx: self.wasi.get_or_insert_with(|| {
                wasi_ctx(&[]).expect("a WASI context without files always builds")
            }),
            table: &mut self.table,
        }
    }
}

type Res<T> = wasmtime::Result<T>;

/// A plugin's WASI context: no environment, no network, no inherited stdio; the directories
/// `files` readable at their own paths. Fails if one cannot be opened.
fn wasi_ctx(files: &[std::path::PathBuf]) -> wasmtime::Result<WasiCtx> {
    let mut wasi = WasiCtx::builder();
    wasi.allow_tcp(false).allow_udp(false);
    for dir in files {
        let guest = dir.to_string_lossy();
        wasi.preopened_dir(dir, guest.as_ref(), FsPerms::ReadOnly)?;
    }
    Ok(wasi.build())
}

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
    fn body(&mut self, _: Resource<RequestHandle>) -> Res<Option<Vec<u8>>> {
        Ok(self.req()?.body.as_ref().map(|b| b.to_vec()))
    }
    fn protocol(&mut self, _: Resource<RequestHandle>) -> Res<String> {
        let version = match self.req()?.parts.version {
            ::http::Version::HTTP_09 => "HTTP/0.9",
            ::http::Version::HTTP_10 => "HTTP/1.0",
            ::http::Version::HTTP_2 => "HTTP/2.0",
            ::http::Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        };
        Ok(version.to_owned())
    }
    fn cache_key(&mut self, _: Resource<RequestHandle>) -> Res<String> {
        let req = self.req()?;
        Ok(match &req.cache.key {
            Some(key) => key.clone(),
            None => crate::cache::default_key(&req.parts),
        })
    }
    fn set_cache_key(&mut self, _: Resource<RequestHandle>, key: String) -> Res<()> {
        self.req()?.cache.key = Some(key);
        Ok(())
    }
    fn bypass_cache(&mut self, _: Resource<RequestHandle>, reason: String) -> Res<()> {
        self.req()?.cache.bypass = Some(reason);
        Ok(())
    }
    fn set_cache_ttl(&mut self, _: Resource<RequestHandle>, seconds: u32) -> Res<()> {
        self.req()?.cache.ttl = Some(std::time::Duration::from_secs(u64::from(seconds)));
        Ok(())
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

impl balancing::Host for PluginState {}

/// The read-only request a balancer sees: getters only, looked up in the lent head on demand.
impl balancing::HostRequestInfo for PluginState {
    fn method(&mut self, _: Resource<BalanceRequestHandle>) -> Res<String> {
        Ok(self.lent()?.0.method.as_str().to_owned())
    }
    fn path(&mut self, _: Resource<BalanceRequestHandle>) -> Res<String> {
        Ok(self.lent()?.0.uri.path().to_owned())
    }
    fn query(&mut self, _: Resource<BalanceRequestHandle>) -> Res<Option<String>> {
        Ok(self.lent()?.0.uri.query().map(str::to_owned))
    }
    fn authority(&mut self, _: Resource<BalanceRequestHandle>) -> Res<Option<String>> {
        Ok(crate::proxy::request_authority(self.lent()?.0).map(str::to_owned))
    }
    fn client_addr(&mut self, _: Resource<BalanceRequestHandle>) -> Res<String> {
        let client = self.lent()?.1;
        Ok(SocketAddr::new(client.ip().to_canonical(), client.port()).to_string())
    }
    fn header(&mut self, _: Resource<BalanceRequestHandle>, name: String) -> Res<Option<Vec<u8>>> {
        Ok(headers::get(&self.lent()?.0.headers, &name))
    }
    fn header_all(&mut self, _: Resource<BalanceRequestHandle>, name: String) -> Res<Vec<Vec<u8>>> {
        Ok(headers::get_all(&self.lent()?.0.headers, &name))
    }
    fn drop(&mut self, _: Resource<BalanceRequestHandle>) -> Res<()> {
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
