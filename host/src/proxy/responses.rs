//! Responses the proxy makes itself: small, plain, and revealing nothing internal.

use super::body::ProxyBody;
use crate::plugin::DirectResponse;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Response, StatusCode};

/// A plain-text error page: `"502 Bad Gateway\n"`.
pub fn error(status: StatusCode) -> Response<ProxyBody> {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut resp = Response::new(ProxyBody::full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Turns a plugin's direct response into an HTTP response, or says what is invalid in it.
pub fn from_plugin(direct: DirectResponse) -> Result<Response<ProxyBody>, String> {
    let status = StatusCode::from_u16(direct.status)
        .map_err(|_| format!("invalid status {}", direct.status))?;
    let mut resp = Response::new(ProxyBody::full(direct.body));
    *resp.status_mut() = status;
    for (name, value) in direct.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        let value = HeaderValue::from_bytes(&value)
            .map_err(|_| format!("invalid value for header {name}"))?;
        resp.headers_mut().append(name, value);
    }
    Ok(resp)
}
