//! Connection-level (layer 4) policies: decide on each connection to a `tcp` or
//! `tls-passthrough` listener from the client's address, the listener, and on passthrough
//! listeners the TLS server name (SNI) and ALPN protocols, before any byte is forwarded.
//!
//! Implement [`ConnectionPolicy`] and call [`export_connection_policy!`] once; the component
//! then implements the `maitred:plugin/connection-filter` world. A crate exports either a
//! [`Plugin`](crate::Plugin) (HTTP) or a connection policy, not both.
//!
//! ```
//! use maitred_sdk::connection::{ConnectionAction, ConnectionInfo, ConnectionPolicy};
//! use maitred_sdk::{Config, export_connection_policy};
//!
//! /// Sends `admin.example.com` to the `admin` upstream and refuses everything else
//! /// that is not from the loopback network.
//! struct AdminOnly;
//!
//! impl ConnectionPolicy for AdminOnly {
//!     fn init(_config: Config) -> Result<Self, String> {
//!         Ok(AdminOnly)
//!     }
//!
//!     fn on_connect(&self, info: &ConnectionInfo) -> ConnectionAction {
//!         match info.server_name.as_deref() {
//!             Some("admin.example.com") => ConnectionAction::route("admin"),
//!             _ if info.client_ip.is_loopback() => ConnectionAction::Allow,
//!             _ => ConnectionAction::Deny,
//!         }
//!     }
//! }
//!
//! export_connection_policy!(AdminOnly);
//! #
//! # let info = ConnectionInfo {
//! #     client_ip: "127.0.0.1".parse().unwrap(), client_port: 1, listener: "edge".into(),
//! #     server_name: Some("admin.example.com".into()), alpn: vec![],
//! # };
//! # assert_eq!(AdminOnly.on_connect(&info), ConnectionAction::route("admin"));
//! ```
//!
//! Attach it in the maitred config with `plugins = ["name"]` on the `[[listener]]`. The
//! listener asks its plugins in order: [`ConnectionAction::Allow`] passes the connection to
//! the next one, the first `Deny` or `Route` decides, and when all allow the connection goes
//! where the listener sends it.
//!
//! The [lifecycle](crate#lifecycle) is the HTTP plugins' one: `init` once per instance,
//! instances may be pooled and reused (keep no per-connection state), and a panic, a runaway
//! loop or too much memory fails only the current connection, which the plugin's `on_error`
//! then decides (`fail-closed` closes it, `fail-open` skips the plugin).

use crate::Config;
use std::net::{IpAddr, SocketAddr};

/// Bindings generated from the `connection-filter` world; `log` and `host` are shared with
/// the `filter` world's bindings. Not a stable API.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "connection-filter",
        pub_export_macro: true,
        export_macro_name: "__export_connection_filter",
        with: {
            "maitred:plugin/log@0.1.0": crate::bindings::maitred::plugin::log,
            "maitred:plugin/host@0.1.0": crate::bindings::maitred::plugin::host,
        },
    });
}

use bindings::maitred::plugin::connection as raw;

/// A new connection, as [`ConnectionPolicy::on_connect`] sees it.
///
/// The fields are public so that a policy's logic can be unit-tested natively:
///
/// ```
/// use maitred_sdk::connection::ConnectionInfo;
///
/// let info = ConnectionInfo {
///     client_ip: "192.0.2.7".parse().unwrap(),
///     client_port: 50123,
///     listener: "edge".into(),
///     server_name: Some("a.example.com".into()),
///     alpn: vec!["h2".into(), "http/1.1".into()],
/// };
/// assert_eq!(info.client().to_string(), "192.0.2.7:50123");
/// assert!(info.offers_alpn("h2"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The client's IP address. An IPv4 client of a dual-stack listener is given as IPv4;
    /// behind an accepted PROXY protocol header it is the address the header names.
    pub client_ip: IpAddr,
    /// The client's source port.
    pub client_port: u16,
    /// The name of the listener the connection arrived on, as in the config.
    pub listener: String,
    /// The TLS server name (SNI), lowercase; `None` on `tcp` listeners and when the client
    /// sent none.
    pub server_name: Option<String>,
    /// The ALPN protocols the client offers, in its order of preference; empty on `tcp`
    /// listeners and when it offers none.
    pub alpn: Vec<String>,
}

impl ConnectionInfo {
    /// The client's address and port together.
    ///
    /// ```
    /// # let info = maitred_sdk::connection::ConnectionInfo {
    /// #     client_ip: "::1".parse().unwrap(), client_port: 4000, listener: "db".into(),
    /// #     server_name: None, alpn: vec![],
    /// # };
    /// assert_eq!(info.client().to_string(), "[::1]:4000");
    /// ```
    pub fn client(&self) -> SocketAddr {
        SocketAddr::new(self.client_ip, self.client_port)
    }

    /// Whether the client offers this ALPN protocol (e.g. `"h2"`).
    ///
    /// ```
    /// # let info = maitred_sdk::connection::ConnectionInfo {
    /// #     client_ip: "127.0.0.1".parse().unwrap(), client_port: 4000, listener: "edge".into(),
    /// #     server_name: None, alpn: vec!["http/1.1".into()],
    /// # };
    /// assert!(info.offers_alpn("http/1.1"));
    /// assert!(!info.offers_alpn("h2"));
    /// ```
    pub fn offers_alpn(&self, protocol: &str) -> bool {
        self.alpn.iter().any(|p| p == protocol)
    }

    pub(crate) fn from_raw(info: raw::ConnectionInfo) -> Self {
        ConnectionInfo {
            client_ip: info
                .client_ip
                .parse()
                .expect("maitred-sdk: the host sent an invalid client IP"),
            client_port: info.client_port,
            listener: info.listener,
            server_name: info.server_name,
            alpn: info.alpn,
        }
    }
}

/// A policy's decision on a connection.
///
/// ```
/// use maitred_sdk::connection::ConnectionAction;
///
/// assert_eq!(ConnectionAction::route("backend-a"), ConnectionAction::Route("backend-a".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionAction {
    /// No objection: the next plugin decides, and after the last one the connection goes
    /// where the listener sends it.
    Allow,
    /// Close the connection; nothing reaches any upstream.
    Deny,
    /// Send the connection to the upstream with this name in the config. An unknown name
    /// fails the plugin (its `on_error` applies).
    Route(String),
}

impl ConnectionAction {
    /// [`ConnectionAction::Route`] to `upstream`.
    ///
    /// ```
    /// let action = maitred_sdk::connection::ConnectionAction::route("db-replica");
    /// assert!(matches!(action, maitred_sdk::connection::ConnectionAction::Route(u) if u == "db-replica"));
    /// ```
    pub fn route(upstream: impl Into<String>) -> Self {
        ConnectionAction::Route(upstream.into())
    }
}

/// A connection-level policy: created once per instance from its config, then asked about
/// each connection. Export the type with [`export_connection_policy!`].
///
/// Both methods are plain Rust, so a policy can be tested natively:
///
/// ```
/// use maitred_sdk::Config;
/// use maitred_sdk::connection::{ConnectionAction, ConnectionInfo, ConnectionPolicy};
///
/// struct LoopbackOnly;
///
/// impl ConnectionPolicy for LoopbackOnly {
///     fn init(_config: Config) -> Result<Self, String> {
///         Ok(LoopbackOnly)
///     }
///     fn on_connect(&self, info: &ConnectionInfo) -> ConnectionAction {
///         if info.client_ip.is_loopback() {
///             ConnectionAction::Allow
///         } else {
///             ConnectionAction::Deny
///         }
///     }
/// }
///
/// let policy = LoopbackOnly::init(Config::new("{}")).unwrap();
/// let mut info = ConnectionInfo {
///     client_ip: "127.0.0.1".parse().unwrap(),
///     client_port: 1234,
///     listener: "db".into(),
///     server_name: None,
///     alpn: vec![],
/// };
/// assert_eq!(policy.on_connect(&info), ConnectionAction::Allow);
/// info.client_ip = "203.0.113.9".parse().unwrap();
/// assert_eq!(policy.on_connect(&info), ConnectionAction::Deny);
/// ```
pub trait ConnectionPolicy: 'static {
    /// Builds the policy from its config; called once per instance, before anything else.
    ///
    /// Return `Err` with a clear message when the config is invalid: the host refuses to load
    /// the plugin and shows the message.
    ///
    /// ```ignore
    /// fn init(config: Config) -> Result<Self, String> {
    ///     let cfg: MyConfig = config.get()?;
    ///     Ok(MyPolicy { cfg })
    /// }
    /// ```
    fn init(config: Config) -> Result<Self, String>
    where
        Self: Sized;

    /// Decides on one connection, before anything is forwarded.
    ///
    /// ```ignore
    /// fn on_connect(&self, info: &ConnectionInfo) -> ConnectionAction {
    ///     if info.server_name.is_none() {
    ///         return ConnectionAction::Deny;
    ///     }
    ///     ConnectionAction::Allow
    /// }
    /// ```
    fn on_connect(&self, info: &ConnectionInfo) -> ConnectionAction;
}

/// Exports a [`ConnectionPolicy`] type as the component's implementation of the
/// `connection-filter` world.
///
/// Call it exactly once per plugin crate, at the top level, with the type implementing
/// [`ConnectionPolicy`] (and do not also call [`export_plugin!`](crate::export_plugin)). It
/// keeps the value `init` returns for the life of the instance and forwards `on-connect` to it.
///
/// ```
/// struct Open;
/// impl maitred_sdk::connection::ConnectionPolicy for Open {
///     fn init(_: maitred_sdk::Config) -> Result<Self, String> { Ok(Open) }
///     fn on_connect(
///         &self,
///         _: &maitred_sdk::connection::ConnectionInfo,
///     ) -> maitred_sdk::connection::ConnectionAction {
///         maitred_sdk::connection::ConnectionAction::Allow
///     }
/// }
/// maitred_sdk::export_connection_policy!(Open);
/// ```
#[macro_export]
macro_rules! export_connection_policy {
    ($policy:ty) => {
        const _: () = {
            struct MaitredConnectionExport;

            impl $crate::connection::__private::Guest for MaitredConnectionExport {
                fn init(
                    config: $crate::__private::String,
                ) -> ::core::result::Result<(), $crate::__private::String> {
                    $crate::connection::__private::init::<$policy>(config)
                }
                fn on_connect(
                    info: $crate::connection::__private::RawInfo,
                ) -> $crate::connection::__private::RawAction {
                    $crate::connection::__private::on_connect(info)
                }
            }

            $crate::connection::bindings::__export_connection_filter!(
                MaitredConnectionExport with_types_in $crate::connection::bindings
            );
        };
    };
}

/// Support code for [`export_connection_policy!`]. Not a stable API.
#[doc(hidden)]
pub mod __private {
    use super::{ConnectionAction, ConnectionInfo, ConnectionPolicy, raw};
    use crate::Config;
    use std::cell::RefCell;

    pub use super::bindings::Guest;
    pub use raw::{ConnectionAction as RawAction, ConnectionInfo as RawInfo};

    thread_local! {
        // The instance's policy. A component instance is single-threaded.
        static POLICY: RefCell<Option<Box<dyn ConnectionPolicy>>> = const { RefCell::new(None) };
    }

    pub fn init<P: ConnectionPolicy>(config: String) -> Result<(), String> {
        // As for HTTP plugins: a panic's message goes to the host's log, then the call traps.
        std::panic::set_hook(Box::new(|info| crate::log::error(format!("panic: {info}"))));
        let policy = P::init(Config::new(config))?;
        POLICY.with(|slot| *slot.borrow_mut() = Some(Box::new(policy)));
        Ok(())
    }

    pub fn on_connect(info: RawInfo) -> RawAction {
        let info = ConnectionInfo::from_raw(info);
        let action = POLICY.with(|slot| match slot.borrow().as_deref() {
            Some(policy) => policy.on_connect(&info),
            None => panic!("maitred-sdk: `on-connect` called before `init` succeeded"),
        });
        match action {
            ConnectionAction::Allow => RawAction::Allow,
            ConnectionAction::Deny => RawAction::Deny,
            ConnectionAction::Route(upstream) => RawAction::Route(upstream),
        }
    }
}
