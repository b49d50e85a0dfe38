//! Layer 4: moving bytes between two TCP connections.
//!
//! - [`copy`]: the bidirectional copy used by `tcp` and `tls-passthrough` listeners, with
//!   half-close, an idle timeout and bounded buffers.

pub mod copy;
