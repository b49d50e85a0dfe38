//! Caching through the proxy (RFC 9111): being written, see issue 5.
