//! Running a route's plugin chain on one request: `on-request` in chain order, then
//! `on-response` in reverse order.
//!
//! A failing plugin (trap, deadline, memory cap, invalid answer) fails only this request:
//! `fail-closed` answers 500, `fail-open` skips the plugin. Its instance is dropped, never
//! reused. A `per-request` plugin keeps its instance from the request to the response phase.

use super::body::ProxyBody;
use super::responses;
use crate::config::{Isolation, OnError};
use crate::plugin::{
    LoadedPlugin, PluginFailure, PluginInstance, RequestAction, RequestView, ResponseView,
};
use crate::runtime::{Route, Snapshot};
use http::{Response, StatusCode};

/// A response sent instead of forwarding (boxed: the path that makes one is the rare one).
pub type Answer = Box<Response<ProxyBody>>;

/// The plugin chain's state for one request.
pub struct ChainRun<'a> {
    route: &'a Route,
    /// Instances of `per-request` plugins kept for the response phase, by chain index.
    held: Vec<(usize, PluginInstance)>,
}

impl<'a> ChainRun<'a> {
    /// Starts a run of `route`'s chain.
    pub fn new(route: &'a Route) -> Self {
        ChainRun {
            route,
            held: Vec::new(),
        }
    }

    /// Runs the request phase. `Err` is the response to send instead of forwarding: a
    /// plugin's direct answer, or a 500 from a fail-closed plugin that failed.
    pub fn on_request(
        &mut self,
        snapshot: &Snapshot,
        mut view: RequestView,
    ) -> Result<RequestView, Answer> {
        for &i in &self.route.request_plugins {
            let plugin = &self.route.plugins[i];
            let mut instance = match plugin.acquire() {
                Ok(instance) => instance,
                Err(failure) => {
                    failed(plugin, &failure)?;
                    continue;
                }
            };
            let before = view.upstream_override.clone();
            let (returned, result) = plugin.on_request(&mut instance, view);
            view = returned;
            let action = result.and_then(|action| match &view.upstream_override {
                Some(name)
                    if view.upstream_override != before
                        && !snapshot.upstreams.contains_key(name) =>
                {
                    Err(PluginFailure::Invalid(format!(
                        "set-upstream named unknown upstream {name:?}"
                    )))
                }
                _ => Ok(action),
            });
            let action = match action {
                Ok(action) => action,
                Err(failure) => {
                    view.upstream_override = before;
                    failed(plugin, &failure)?;
                    continue;
                }
            };
            self.keep(i, plugin, instance);
            if let RequestAction::Respond(direct) = action {
                return match responses::from_plugin(direct) {
                    Ok(resp) => Err(Box::new(resp)),
                    Err(why) => {
                        failed(plugin, &PluginFailure::Invalid(why))?;
                        continue;
                    }
                };
            }
        }
        Ok(view)
    }

    /// Runs the response phase on the upstream's response head.
    pub fn on_response(&mut self, mut view: ResponseView) -> Result<ResponseView, Answer> {
        for &i in &self.route.response_plugins {
            let plugin = &self.route.plugins[i];
            let held = self
                .held
                .iter()
                .position(|(j, _)| *j == i)
                .map(|pos| self.held.swap_remove(pos).1);
            let mut instance = match held.map_or_else(|| plugin.acquire(), Ok) {
                Ok(instance) => instance,
                Err(failure) => {
                    failed(plugin, &failure)?;
                    continue;
                }
            };
            let (returned, result) = plugin.on_response(&mut instance, view);
            view = returned;
            match result {
                Ok(()) => plugin.release(instance),
                Err(failure) => failed(plugin, &failure)?,
            }
        }
        Ok(view)
    }

    /// After a successful request-phase call: keep a per-request instance for the response
    /// phase, or give a pooled one back.
    fn keep(&mut self, index: usize, plugin: &LoadedPlugin, instance: PluginInstance) {
        if plugin.isolation == Isolation::PerRequest && plugin.wants_response() {
            self.held.push((index, instance));
        } else {
            plugin.release(instance);
        }
    }
}

/// Logs a plugin failure; `Err(500)` when the plugin fails closed, `Ok` to skip it.
fn failed(plugin: &LoadedPlugin, failure: &PluginFailure) -> Result<(), Answer> {
    match plugin.on_error {
        OnError::FailClosed => {
            tracing::error!(plugin = %plugin.name, "plugin failed, request refused (fail-closed): {failure}");
            Err(Box::new(responses::error(
                StatusCode::INTERNAL_SERVER_ERROR,
            )))
        }
        OnError::FailOpen => {
            tracing::warn!(plugin = %plugin.name, "plugin failed, skipped (fail-open): {failure}");
            Ok(())
        }
    }
}
