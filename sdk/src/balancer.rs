//! Load-balancing policies: choose which endpoint of an upstream gets each request (or, on
//! `tcp` and `tls-passthrough` listeners, each connection).
//!
//! Implement [`BalancerPolicy`] and call [`export_balancer!`] once; the component then
//! implements the `maitred:plugin/balancer` world. A crate exports one kind of plugin: an
//! HTTP [`Plugin`](crate::Plugin), a [connection policy](crate::connection), or a balancer.
//!
//! ```
//! use maitred_sdk::balancer::{BalancerPolicy, Endpoint, Target};
//! use maitred_sdk::{Config, export_balancer};
//!
//! /// Sends each request to the available endpoint with the fewest requests in flight per
//! /// unit of weight.
//! struct LeastLoaded;
//!
//! impl BalancerPolicy for LeastLoaded {
//!     fn init(_config: Config) -> Result<Self, String> {
//!         Ok(LeastLoaded)
//!     }
//!
//!     fn pick(&self, _target: &Target, endpoints: &[Endpoint]) -> Option<usize> {
//!         (0..endpoints.len())
//!             .filter(|&i| endpoints[i].is_available())
//!             .min_by_key(|&i| {
//!                 let e = &endpoints[i];
//!                 // in_flight / weight, compared without division.
//!                 (u64::from(e.in_flight) << 32) / u64::from(e.weight)
//!             })
//!     }
//! }
//!
//! export_balancer!(LeastLoaded);
//! #
//! # let mut busy = Endpoint::new("127.0.0.1:9001".parse().unwrap());
//! # busy.in_flight = 5;
//! # let idle = Endpoint::new("127.0.0.1:9002".parse().unwrap());
//! # let target = Target::Request(maitred_sdk::balancer::Request::new("GET", "/"));
//! # assert_eq!(LeastLoaded.pick(&target, &[busy, idle]), Some(1));
//! ```
//!
//! Use it from an upstream in the maitred config:
//!
//! ```toml
//! [upstream.api]
//! endpoints = ["127.0.0.1:9001", "127.0.0.1:9002"]
//! balancer = "plugin:least-loaded"
//!
//! [plugin.least-loaded]
//! wasm = "least_loaded.wasm"
//! ```
//!
//! # What the policy sees and answers
//!
//! - The [`Target`]: an HTTP [`Request`] (read-only: a balancer cannot change it) or a
//!   layer-4 [`ConnectionInfo`].
//! - Every endpoint of the upstream, in config order, with its live state: unhealthy and
//!   draining ones included, so an index means the same endpoint from call to call while the
//!   list does not change. [`Endpoint::is_available`] tells which ones should get new work.
//! - It answers `Some(index)` into that list, or `None` for no preference: the host then
//!   uses round-robin over the available endpoints. An index past the end is a failure of
//!   the plugin (its `on_error` applies); the host may decline an unavailable endpoint and
//!   fall back as for `None`.
//!
//! The [lifecycle](crate#lifecycle) is the HTTP plugins' one: `init` once per instance,
//! instances may be pooled and reused (keep no per-request state), and a panic, a runaway
//! loop or too much memory fails only the current pick.
//!
//! `plugins/balancer-affinity` in the maitred repository is a complete policy: sticky
//! endpoints by a hash of a header, cookie or the client address.

use crate::Config;
use crate::connection::ConnectionInfo;
use std::net::{IpAddr, SocketAddr};

/// Bindings generated from the `balancer` world; `log`, `host` and `connection` are shared
/// with the other worlds' bindings. Not a stable API.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "balancer",
        pub_export_macro: true,
        export_macro_name: "__export_balancer",
        with: {
            "maitred:plugin/log@0.1.0": crate::bindings::maitred::plugin::log,
            "maitred:plugin/host@0.1.0": crate::bindings::maitred::plugin::host,
            "maitred:plugin/connection@0.1.0": crate::connection::bindings::maitred::plugin::connection,
        },
    });
}

use bindings::maitred::plugin::balancing as raw;

/// One endpoint of the upstream with its live state, as [`BalancerPolicy::pick`] sees it.
///
/// The fields are public so that a policy can be unit-tested natively; [`Endpoint::new`]
/// makes a healthy endpoint of weight 1 to start from.
///
/// ```
/// use maitred_sdk::balancer::Endpoint;
///
/// let mut e = Endpoint::new("10.0.0.1:8080".parse().unwrap());
/// assert!(e.is_available());
/// e.draining = true;
/// assert!(!e.is_available());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The endpoint's address, as in the upstream's config.
    pub address: SocketAddr,
    /// The effective weight: the configured one (1 by default), lowered while the endpoint
    /// ramps up after a slow start. 0 means "send nothing new here".
    pub weight: u32,
    /// Whether health checks (active and passive) consider the endpoint up.
    pub healthy: bool,
    /// Whether the endpoint is draining: in-flight work finishes, nothing new should go there.
    pub draining: bool,
    /// Requests (HTTP) or connections (layer 4) in flight to the endpoint.
    pub in_flight: u32,
    /// Exponentially weighted moving average of its response latency, in microseconds; 0
    /// before anything has been measured.
    pub ewma_latency_micros: u64,
}

impl Endpoint {
    /// A healthy, non-draining endpoint of weight 1 with nothing in flight, for tests.
    ///
    /// ```
    /// let e = maitred_sdk::balancer::Endpoint::new("[::1]:443".parse().unwrap());
    /// assert_eq!((e.weight, e.healthy, e.draining, e.in_flight), (1, true, false, 0));
    /// ```
    pub fn new(address: SocketAddr) -> Self {
        Endpoint {
            address,
            weight: 1,
            healthy: true,
            draining: false,
            in_flight: 0,
            ewma_latency_micros: 0,
        }
    }

    /// Whether new work should go here: healthy, not draining, and of a weight above 0.
    ///
    /// ```
    /// let mut e = maitred_sdk::balancer::Endpoint::new("127.0.0.1:1".parse().unwrap());
    /// e.weight = 0;
    /// assert!(!e.is_available());
    /// ```
    pub fn is_available(&self) -> bool {
        self.healthy && !self.draining && self.weight > 0
    }

    fn from_raw(e: raw::Endpoint) -> Self {
        Endpoint {
            address: e
                .address
                .parse()
                .expect("maitred-sdk: the host sent an invalid endpoint address"),
            weight: e.weight,
            healthy: e.healthy,
            draining: e.draining,
            in_flight: e.in_flight,
            ewma_latency_micros: e.ewma_latency_micros,
        }
    }
}

/// What is being balanced: an HTTP request or a layer-4 connection.
///
/// ```
/// use maitred_sdk::balancer::{Request, Target};
///
/// let target = Target::Request(Request::new("GET", "/").with_client("192.0.2.7:5000".parse().unwrap()));
/// assert_eq!(target.client_ip().to_string(), "192.0.2.7");
/// assert!(target.connection().is_none());
/// ```
#[derive(Debug)]
pub enum Target<'a> {
    /// An HTTP request, read-only.
    Request(Request<'a>),
    /// A connection to a `tcp` or `tls-passthrough` listener.
    Connection(ConnectionInfo),
}

impl Target<'_> {
    /// The client's IP address (of the request or of the connection).
    ///
    /// ```
    /// # use maitred_sdk::balancer::{Request, Target};
    /// let target = Target::Request(Request::new("GET", "/"));
    /// assert!(target.client_ip().is_loopback());
    /// ```
    pub fn client_ip(&self) -> IpAddr {
        match self {
            Target::Request(req) => req.client().ip(),
            Target::Connection(info) => info.client_ip,
        }
    }

    /// The request, when an HTTP request is being balanced.
    ///
    /// ```
    /// # use maitred_sdk::balancer::{Request, Target};
    /// let target = Target::Request(Request::new("GET", "/a"));
    /// assert_eq!(target.request().map(|r| r.path()).as_deref(), Some("/a"));
    /// ```
    pub fn request(&self) -> Option<&Request<'_>> {
        match self {
            Target::Request(req) => Some(req),
            Target::Connection(_) => None,
        }
    }

    /// The connection, when a layer-4 connection is being balanced.
    ///
    /// ```
    /// # use maitred_sdk::balancer::{Request, Target};
    /// assert!(Target::Request(Request::new("GET", "/")).connection().is_none());
    /// ```
    pub fn connection(&self) -> Option<&ConnectionInfo> {
        match self {
            Target::Request(_) => None,
            Target::Connection(info) => Some(info),
        }
    }
}

/// The HTTP request being balanced, read-only.
///
/// In a plugin it is a handle on the host's request: each method is one call into the host
/// and copies just what it returns. [`Request::new`] and the `with_*` methods build a
/// stand-alone one, to unit-test a policy natively. Header names are case-insensitive.
///
/// ```
/// use maitred_sdk::balancer::Request;
///
/// let req = Request::new("GET", "/cart")
///     .with_header("X-User", "alice")
///     .with_header("cookie", "session=s1; theme=dark");
/// assert_eq!(req.header_str("x-user").as_deref(), Some("alice"));
/// assert_eq!(req.cookie("session").as_deref(), Some("s1"));
/// ```
pub struct Request<'a>(Source<'a>);

enum Source<'a> {
    /// The host's request, during `pick`.
    Host(&'a raw::RequestInfo),
    /// A request built in Rust, for tests.
    Local(Box<LocalRequest>),
}

struct LocalRequest {
    method: String,
    path: String,
    query: Option<String>,
    authority: Option<String>,
    client: SocketAddr,
    headers: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Source::Host(_) => f.write_str("Request(<host request>)"),
            Source::Local(r) => f
                .debug_struct("Request")
                .field("method", &r.method)
                .field("path", &r.path)
                .field("query", &r.query)
                .field("authority", &r.authority)
                .field("client", &r.client)
                .field("headers", &r.headers)
                .finish(),
        }
    }
}

impl Request<'static> {
    /// A stand-alone request with this method and path (no query, authority or headers;
    /// client `127.0.0.1:1`), for tests.
    ///
    /// ```
    /// let req = maitred_sdk::balancer::Request::new("POST", "/upload");
    /// assert_eq!((req.method(), req.path()), ("POST".to_string(), "/upload".to_string()));
    /// ```
    pub fn new(method: &str, path: &str) -> Self {
        Request(Source::Local(Box::new(LocalRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query: None,
            authority: None,
            client: SocketAddr::from(([127, 0, 0, 1], 1)),
            headers: Vec::new(),
        })))
    }

    /// With this query string (without `?`).
    ///
    /// ```
    /// let req = maitred_sdk::balancer::Request::new("GET", "/").with_query("a=1");
    /// assert_eq!(req.query().as_deref(), Some("a=1"));
    /// ```
    pub fn with_query(self, query: &str) -> Self {
        self.local(|r| r.query = Some(query.to_owned()))
    }

    /// With this authority (`Host`).
    ///
    /// ```
    /// let req = maitred_sdk::balancer::Request::new("GET", "/").with_authority("a.test");
    /// assert_eq!(req.authority().as_deref(), Some("a.test"));
    /// ```
    pub fn with_authority(self, authority: &str) -> Self {
        self.local(|r| r.authority = Some(authority.to_owned()))
    }

    /// From this client address.
    ///
    /// ```
    /// let req = maitred_sdk::balancer::Request::new("GET", "/")
    ///     .with_client("[2001:db8::1]:4000".parse().unwrap());
    /// assert_eq!(req.client().port(), 4000);
    /// ```
    pub fn with_client(self, client: SocketAddr) -> Self {
        self.local(|r| r.client = client)
    }

    /// With one more header value (after any added before).
    ///
    /// ```
    /// let req = maitred_sdk::balancer::Request::new("GET", "/")
    ///     .with_header("cookie", "a=1")
    ///     .with_header("Cookie", "b=2");
    /// assert_eq!(req.header_all("cookie"), vec![b"a=1".to_vec(), b"b=2".to_vec()]);
    /// ```
    pub fn with_header(self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.local(|r| r.headers.push((name.to_owned(), value.as_ref().to_vec())))
    }

    fn local(mut self, edit: impl FnOnce(&mut LocalRequest)) -> Self {
        if let Source::Local(r) = &mut self.0 {
            edit(r);
        }
        self
    }
}

impl Request<'_> {
    /// The method, e.g. `GET`.
    ///
    /// ```ignore
    /// if req.method() != "GET" { return None; }
    /// ```
    pub fn method(&self) -> String {
        match &self.0 {
            Source::Host(r) => r.method(),
            Source::Local(r) => r.method.clone(),
        }
    }

    /// The path without the query, e.g. `/api/users`.
    ///
    /// ```ignore
    /// let tenant = req.path().split('/').nth(1).map(str::to_owned);
    /// ```
    pub fn path(&self) -> String {
        match &self.0 {
            Source::Host(r) => r.path(),
            Source::Local(r) => r.path.clone(),
        }
    }

    /// The query string without the leading `?`, if any.
    ///
    /// ```ignore
    /// let q = req.query().unwrap_or_default();
    /// ```
    pub fn query(&self) -> Option<String> {
        match &self.0 {
            Source::Host(r) => r.query(),
            Source::Local(r) => r.query.clone(),
        }
    }

    /// The authority (`Host` header, or HTTP/2 `:authority`), if any.
    ///
    /// ```ignore
    /// let host = req.authority().unwrap_or_default();
    /// ```
    pub fn authority(&self) -> Option<String> {
        match &self.0 {
            Source::Host(r) => r.authority(),
            Source::Local(r) => r.authority.clone(),
        }
    }

    /// The client's address. An IPv4 client of a dual-stack listener is given as IPv4.
    ///
    /// ```ignore
    /// let ip = req.client().ip();
    /// ```
    pub fn client(&self) -> SocketAddr {
        match &self.0 {
            Source::Host(r) => r
                .client_addr()
                .parse()
                .expect("maitred-sdk: the host sent an invalid client address"),
            Source::Local(r) => r.client,
        }
    }

    /// The first value of a header, as raw bytes.
    ///
    /// ```ignore
    /// let user: Option<Vec<u8>> = req.header("x-user");
    /// ```
    pub fn header(&self, name: &str) -> Option<Vec<u8>> {
        match &self.0 {
            Source::Host(r) => r.header(name),
            Source::Local(r) => r
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone()),
        }
    }

    /// The first value of a header as text; `None` if it is missing or not UTF-8.
    ///
    /// ```ignore
    /// let tenant = req.header_str("x-tenant").unwrap_or_default();
    /// ```
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name).and_then(|v| String::from_utf8(v).ok())
    }

    /// Every value of a header, in order (empty if there is none).
    ///
    /// ```ignore
    /// let forwarded = req.header_all("x-forwarded-for");
    /// ```
    pub fn header_all(&self, name: &str) -> Vec<Vec<u8>> {
        match &self.0 {
            Source::Host(r) => r.header_all(name),
            Source::Local(r) => r
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .collect(),
        }
    }

    /// The value of a cookie from the `Cookie` header(s), surrounding quotes removed; the
    /// first one wins if the name repeats. Names are case-sensitive.
    ///
    /// ```ignore
    /// let session = req.cookie("session");
    /// ```
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.header_all("cookie")
            .iter()
            .find_map(|header| crate::http::find_cookie(header, name))
    }
}

/// A load-balancing policy: created once per instance from its config, then asked to pick
/// an endpoint for each request or connection. Export the type with [`export_balancer!`].
///
/// Both methods are plain Rust, so a policy can be tested natively with
/// [`Request::new`] and [`Endpoint::new`]:
///
/// ```
/// use maitred_sdk::Config;
/// use maitred_sdk::balancer::{BalancerPolicy, Endpoint, Request, Target};
///
/// /// `x-pin: N` sends the request to endpoint N; anything else is the host's choice.
/// struct Pin;
///
/// impl BalancerPolicy for Pin {
///     fn init(_config: Config) -> Result<Self, String> {
///         Ok(Pin)
///     }
///     fn pick(&self, target: &Target, endpoints: &[Endpoint]) -> Option<usize> {
///         let n: usize = target.request()?.header_str("x-pin")?.parse().ok()?;
///         endpoints.get(n).filter(|e| e.is_available()).map(|_| n)
///     }
/// }
///
/// let policy = Pin::init(Config::new("{}")).unwrap();
/// let endpoints = [
///     Endpoint::new("127.0.0.1:9001".parse().unwrap()),
///     Endpoint::new("127.0.0.1:9002".parse().unwrap()),
/// ];
/// let pinned = Target::Request(Request::new("GET", "/").with_header("x-pin", "1"));
/// assert_eq!(policy.pick(&pinned, &endpoints), Some(1));
/// let plain = Target::Request(Request::new("GET", "/"));
/// assert_eq!(policy.pick(&plain, &endpoints), None);
/// ```
pub trait BalancerPolicy: 'static {
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

    /// Chooses the endpoint for `target`: `Some(index)` into `endpoints`, or `None` to leave
    /// the choice to the host (round-robin over the available endpoints).
    ///
    /// ```ignore
    /// fn pick(&self, _target: &Target, endpoints: &[Endpoint]) -> Option<usize> {
    ///     // The first available endpoint: active/passive failover.
    ///     endpoints.iter().position(Endpoint::is_available)
    /// }
    /// ```
    fn pick(&self, target: &Target<'_>, endpoints: &[Endpoint]) -> Option<usize>;
}

/// Exports a [`BalancerPolicy`] type as the component's implementation of the `balancer`
/// world.
///
/// Call it exactly once per plugin crate, at the top level, with the type implementing
/// [`BalancerPolicy`] (and export no other kind of plugin from the crate). It keeps the
/// value `init` returns for the life of the instance and forwards `pick` to it.
///
/// ```
/// use maitred_sdk::balancer::{BalancerPolicy, Endpoint, Target};
///
/// /// Active/passive: the first available endpoint takes everything.
/// struct Failover;
/// impl BalancerPolicy for Failover {
///     fn init(_: maitred_sdk::Config) -> Result<Self, String> { Ok(Failover) }
///     fn pick(&self, _: &Target, endpoints: &[Endpoint]) -> Option<usize> {
///         endpoints.iter().position(Endpoint::is_available)
///     }
/// }
/// maitred_sdk::export_balancer!(Failover);
/// ```
#[macro_export]
macro_rules! export_balancer {
    ($policy:ty) => {
        const _: () = {
            struct MaitredBalancerExport;

            impl $crate::balancer::__private::Guest for MaitredBalancerExport {
                fn init(
                    config: $crate::__private::String,
                ) -> ::core::result::Result<(), $crate::__private::String> {
                    $crate::balancer::__private::init::<$policy>(config)
                }
                fn pick(
                    target: $crate::balancer::__private::RawTarget<'_>,
                    endpoints: $crate::balancer::__private::Vec<
                        $crate::balancer::__private::RawEndpoint,
                    >,
                ) -> ::core::option::Option<u32> {
                    $crate::balancer::__private::pick(target, endpoints)
                }
            }

            $crate::balancer::bindings::__export_balancer!(
                MaitredBalancerExport with_types_in $crate::balancer::bindings
            );
        };
    };
}

/// Support code for [`export_balancer!`]. Not a stable API.
#[doc(hidden)]
pub mod __private {
    use super::{BalancerPolicy, Endpoint, Request, Source, Target, raw};
    use crate::Config;
    use crate::connection::ConnectionInfo;
    use std::cell::RefCell;

    pub use super::bindings::Guest;
    pub use raw::{Endpoint as RawEndpoint, Target as RawTarget};
    pub use std::vec::Vec;

    thread_local! {
        // The instance's policy. A component instance is single-threaded.
        static POLICY: RefCell<Option<Box<dyn BalancerPolicy>>> = const { RefCell::new(None) };
    }

    pub fn init<P: BalancerPolicy>(config: String) -> Result<(), String> {
        // As for HTTP plugins: a panic's message goes to the host's log, then the call traps.
        std::panic::set_hook(Box::new(|info| crate::log::error(format!("panic: {info}"))));
        let policy = P::init(Config::new(config))?;
        POLICY.with(|slot| *slot.borrow_mut() = Some(Box::new(policy)));
        Ok(())
    }

    pub fn pick(target: RawTarget<'_>, endpoints: Vec<RawEndpoint>) -> Option<u32> {
        let target = match target {
            RawTarget::Request(req) => Target::Request(Request(Source::Host(req))),
            RawTarget::Connection(info) => Target::Connection(ConnectionInfo::from_raw(info)),
        };
        let endpoints: Vec<Endpoint> = endpoints.into_iter().map(Endpoint::from_raw).collect();
        let picked = POLICY.with(|slot| match slot.borrow().as_deref() {
            Some(policy) => policy.pick(&target, &endpoints),
            None => panic!("maitred-sdk: `pick` called before `init` succeeded"),
        });
        // An index past `u32::MAX` is past the end of the list too: the host says so.
        picked.map(|i| u32::try_from(i).unwrap_or(u32::MAX))
    }
}
