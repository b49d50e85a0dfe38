//! The `waf` plugin through the proxy: being written, see issue 7.
