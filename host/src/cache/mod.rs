//! HTTP caching (RFC 9111). So far: [`policy`], the pure rules; storage, revalidation and the
//! request path come next.

pub mod policy;
