//! The `cache-key` plugin through the proxy: being written, see issue 5.
