//! The request as the engine sees it: a [`Transaction`] (independent of the SDK) and the
//! collections derived from it (arguments, cookies, body arguments, files).
use std::borrow::Cow;

use maitred_sdk::body;

use crate::action::BodyProcessor;
use crate::pipeline::Source;
use crate::variable::Var;

/// One request, as given to [`Engine::evaluate`](crate::engine::Engine::evaluate).
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path as received (still percent-encoded), without the query.
    pub path: String,
    /// The query string without `?`.
    pub query: Option<String>,
    /// `HTTP/1.1`, `HTTP/2.0`, ...
    pub protocol: String,
    /// Headers in order (names lowercase).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The buffered body; `None` when the host did not buffer it.
    pub body: Option<Vec<u8>>,
    /// The client's `ip:port`.
    pub client_addr: String,
    /// An id for this request (`UNIQUE_ID`).
    pub unique_id: String,
}

/// A named value of a collection.
#[derive(Debug, Clone)]
pub struct Item {
    /// Its name (the key of `ARGS:key`).
    pub name: String,
    /// Its value.
    pub value: Vec<u8>,
}

impl Item {
    fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Item {
        Item {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// Collection numbers for [`Source`] (transformation caching).
mod kind {
    pub const ARGS_GET: u8 = 0;
    pub const ARGS_GET_NAMES: u8 = 1;
    pub const ARGS_POST: u8 = 2;
    pub const ARGS_POST_NAMES: u8 = 3;
    pub const HEADERS: u8 = 4;
    pub const HEADERS_NAMES: u8 = 5;
    pub const COOKIES: u8 = 6;
    pub const COOKIES_NAMES: u8 = 7;
    pub const FILES: u8 = 8;
    pub const FILES_NAMES: u8 = 9;
    pub const PART_HEADERS: u8 = 10;
    pub const SCALAR: u8 = 11;
    pub const FILES_SIZES: u8 = 12;
}

/// The request's variables and collections.
pub struct RequestData {
    /// The input.
    pub tx: Transaction,
    uri: String,
    basename: String,
    line: String,
    remote_addr: String,
    remote_port: String,
    server_name: String,
    args_get: Vec<Item>,
    headers: Vec<Item>,
    cookies: Vec<Item>,
    /// Filled by [`RequestData::process_body`].
    args_post: Vec<Item>,
    files: Vec<Item>,
    file_sizes: Vec<Item>,
    part_headers: Vec<Item>,
    xml_text: Option<Vec<u8>>,
    body_variable: bool,
    processor: Option<BodyProcessor>,
    body_error: Option<String>,
}

impl RequestData {
    /// Derives the request-line collections (everything but the body).
    pub fn new(tx: Transaction) -> RequestData {
        let uri = match &tx.query {
            Some(q) => format!("{}?{q}", tx.path),
            None => tx.path.clone(),
        };
        let basename = tx.path.rsplit('/').next().unwrap_or("").to_string();
        let line = format!("{} {uri} {}", tx.method, tx.protocol);
        let (remote_addr, remote_port) = split_addr(&tx.client_addr);
        let args_get = tx
            .query
            .as_deref()
            .map(body::query_args)
            .unwrap_or_default()
            .into_iter()
            .map(|(n, v)| Item::new(n, v))
            .collect();
        let headers: Vec<Item> = tx
            .headers
            .iter()
            .map(|(n, v)| Item::new(n.clone(), v.clone()))
            .collect();
        let cookies = body::cookies(
            tx.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
                .map(|(_, v)| v),
        )
        .into_iter()
        .map(|(n, v)| Item::new(n, v))
        .collect();
        let server_name = headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("host"))
            .map(|h| String::from_utf8_lossy(&h.value).into_owned())
            .unwrap_or_default();
        RequestData {
            uri,
            basename,
            line,
            remote_addr,
            remote_port,
            server_name,
            args_get,
            headers,
            cookies,
            args_post: Vec::new(),
            files: Vec::new(),
            file_sizes: Vec::new(),
            part_headers: Vec::new(),
            xml_text: None,
            body_variable: false,
            processor: None,
            body_error: None,
            tx,
        }
    }

    /// The first value of a request header.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }

    /// Parses the body with `forced` or the processor its `Content-Type` calls for; fills
    /// ARGS_POST, FILES, XML and REQUEST_BODY (raw body: url-encoded or unknown types, or
    /// always with `force_variable`). A parse error sets REQBODY_ERROR.
    pub fn process_body(&mut self, forced: Option<BodyProcessor>, force_variable: bool) {
        let content_type = self
            .header("content-type")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let ct = content_type.to_ascii_lowercase();
        let processor = forced.or(if ct.starts_with("application/x-www-form-urlencoded") {
            Some(BodyProcessor::UrlEncoded)
        } else if ct.starts_with("multipart/form-data") {
            Some(BodyProcessor::Multipart)
        } else if ct.contains("json") {
            Some(BodyProcessor::Json)
        } else if ct.contains("xml") {
            Some(BodyProcessor::Xml)
        } else {
            None
        });
        self.processor = processor;
        self.body_variable =
            force_variable || matches!(processor, None | Some(BodyProcessor::UrlEncoded));
        let Some(body) = self.tx.body.as_deref().filter(|b| !b.is_empty()) else {
            return;
        };
        let pairs =
            |v: Vec<(String, String)>| v.into_iter().map(|(n, v)| Item::new(n, v)).collect();
        match processor {
            None => {}
            Some(BodyProcessor::UrlEncoded) => self.args_post = pairs(body::form_args(body)),
            Some(BodyProcessor::Json) => match body::json_args(body) {
                Ok(args) => self.args_post = pairs(args),
                Err(e) => self.body_error = Some(format!("JSON parsing error: {e}")),
            },
            Some(BodyProcessor::Multipart) => match body::multipart(body, &content_type) {
                Ok(m) => {
                    self.args_post = pairs(m.args);
                    self.part_headers = pairs(m.part_headers);
                    for f in m.files {
                        self.file_sizes
                            .push(Item::new(f.field.clone(), f.size.to_string()));
                        self.files.push(Item::new(f.field, f.filename));
                    }
                }
                Err(e) => self.body_error = Some(format!("Multipart parsing error: {e}")),
            },
            Some(BodyProcessor::Xml) => self.xml_text = Some(xml_text(body)),
        }
    }

    /// Calls `f(name, value, source)` for each item of a collection variable, in order.
    pub fn for_each(&self, var: Var, f: &mut dyn FnMut(&str, &[u8], Source)) {
        let values = |items: &[Item], k: u8, f: &mut dyn FnMut(&str, &[u8], Source)| {
            for (i, it) in items.iter().enumerate() {
                f(&it.name, &it.value, Source::new(k, i));
            }
        };
        let names = |items: &[Item], k: u8, f: &mut dyn FnMut(&str, &[u8], Source)| {
            for (i, it) in items.iter().enumerate() {
                f(&it.name, it.name.as_bytes(), Source::new(k, i));
            }
        };
        match var {
            Var::Args => {
                values(&self.args_get, kind::ARGS_GET, f);
                values(&self.args_post, kind::ARGS_POST, f);
            }
            Var::ArgsNames => {
                names(&self.args_get, kind::ARGS_GET_NAMES, f);
                names(&self.args_post, kind::ARGS_POST_NAMES, f);
            }
            Var::ArgsGet => values(&self.args_get, kind::ARGS_GET, f),
            Var::ArgsGetNames => names(&self.args_get, kind::ARGS_GET_NAMES, f),
            Var::ArgsPost => values(&self.args_post, kind::ARGS_POST, f),
            Var::ArgsPostNames => names(&self.args_post, kind::ARGS_POST_NAMES, f),
            Var::RequestHeaders => values(&self.headers, kind::HEADERS, f),
            Var::RequestHeadersNames => names(&self.headers, kind::HEADERS_NAMES, f),
            Var::RequestCookies => values(&self.cookies, kind::COOKIES, f),
            Var::RequestCookiesNames => names(&self.cookies, kind::COOKIES_NAMES, f),
            Var::Files => values(&self.files, kind::FILES, f),
            Var::FilesNames => names(&self.files, kind::FILES_NAMES, f),
            Var::FilesSizes => values(&self.file_sizes, kind::FILES_SIZES, f),
            Var::MultipartPartHeaders => values(&self.part_headers, kind::PART_HEADERS, f),
            Var::Xml => {
                if let Some(text) = &self.xml_text {
                    f("/*", text, Source::new(kind::SCALAR, Var::Xml as usize));
                }
            }
            scalar => {
                if let Some(v) = self.scalar(scalar) {
                    f("", &v, Source::new(kind::SCALAR, scalar as usize));
                }
            }
        }
    }

    /// The value of a single-valued variable (`None` when it is not set or is a collection).
    pub fn scalar(&self, var: Var) -> Option<Cow<'_, [u8]>> {
        let b = |s: &str| -> Option<Cow<'_, [u8]>> { Some(Cow::Owned(s.as_bytes().to_vec())) };
        let t = &self.tx;
        match var {
            Var::RequestUri | Var::RequestUriRaw => Some(Cow::Borrowed(self.uri.as_bytes())),
            Var::RequestFilename => Some(Cow::Borrowed(t.path.as_bytes())),
            Var::RequestBasename => Some(Cow::Borrowed(self.basename.as_bytes())),
            Var::RequestLine => Some(Cow::Borrowed(self.line.as_bytes())),
            Var::RequestMethod => Some(Cow::Borrowed(t.method.as_bytes())),
            Var::RequestProtocol => Some(Cow::Borrowed(t.protocol.as_bytes())),
            Var::QueryString => Some(Cow::Borrowed(t.query.as_deref().unwrap_or("").as_bytes())),
            Var::RequestBody => match (&t.body, self.body_variable) {
                (Some(body), true) => Some(Cow::Borrowed(body)),
                _ => None,
            },
            Var::RequestBodyLength => b(&t.body.as_ref().map_or(0, Vec::len).to_string()),
            Var::ArgsCombinedSize => {
                let size: usize = self
                    .args_get
                    .iter()
                    .chain(&self.args_post)
                    .map(|a| a.name.len() + a.value.len())
                    .sum();
                b(&size.to_string())
            }
            Var::FilesCombinedSize => {
                let size: usize = self
                    .file_sizes
                    .iter()
                    .filter_map(|s| std::str::from_utf8(&s.value).ok()?.parse::<usize>().ok())
                    .sum();
                b(&size.to_string())
            }
            Var::RemoteAddr => Some(Cow::Borrowed(self.remote_addr.as_bytes())),
            Var::RemotePort => Some(Cow::Borrowed(self.remote_port.as_bytes())),
            Var::ServerName => Some(Cow::Borrowed(self.server_name.as_bytes())),
            Var::UniqueId => Some(Cow::Borrowed(t.unique_id.as_bytes())),
            Var::Duration => b("0"),
            Var::ReqbodyProcessor => self.processor.map(|p| Cow::Borrowed(p.name().as_bytes())),
            Var::ReqbodyError => b(if self.body_error.is_some() { "1" } else { "0" }),
            Var::ReqbodyErrorMsg => self
                .body_error
                .as_deref()
                .map(|m| Cow::Borrowed(m.as_bytes())),
            Var::MultipartStrictError | Var::MultipartUnmatchedBoundary => {
                let multipart_error =
                    self.processor == Some(BodyProcessor::Multipart) && self.body_error.is_some();
                b(if multipart_error { "1" } else { "0" })
            }
            _ => None,
        }
    }

    /// The first value of `collection.key` for macros such as `%{request_headers.host}`.
    pub fn first(&self, var: Var, key: &str) -> Option<&[u8]> {
        let items: Box<dyn Iterator<Item = &Item>> = match var {
            Var::RequestHeaders => Box::new(self.headers.iter()),
            Var::RequestCookies => Box::new(self.cookies.iter()),
            Var::Args => Box::new(self.args_get.iter().chain(&self.args_post)),
            Var::ArgsGet => Box::new(self.args_get.iter()),
            Var::ArgsPost => Box::new(self.args_post.iter()),
            _ => return None,
        };
        items
            .into_iter()
            .find(|i| i.name.eq_ignore_ascii_case(key))
            .map(|i| i.value.as_slice())
    }
}

fn split_addr(addr: &str) -> (String, String) {
    match addr.rsplit_once(':') {
        Some((ip, port)) if port.parse::<u16>().is_ok() => (
            ip.trim_start_matches('[').trim_end_matches(']').to_string(),
            port.to_string(),
        ),
        _ => (addr.to_string(), String::new()),
    }
}

/// The character data of an XML document (what ModSecurity's `XML:/*` yields): markup
/// removed, text runs joined.
fn xml_text(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut in_tag = false;
    for &c in body {
        match c {
            b'<' => in_tag = true,
            b'>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx() -> Transaction {
        Transaction {
            method: "POST".into(),
            path: "/a/b.php".into(),
            query: Some("id=1&x=%27a".into()),
            protocol: "HTTP/1.1".into(),
            headers: vec![
                ("host".into(), b"example.com".to_vec()),
                ("cookie".into(), b"s=1; t=2".to_vec()),
                (
                    "content-type".into(),
                    b"application/x-www-form-urlencoded".to_vec(),
                ),
            ],
            body: Some(b"p=q&r=s+t".to_vec()),
            client_addr: "10.0.0.1:5555".into(),
            unique_id: "abc".into(),
        }
    }

    fn collect(d: &RequestData, var: Var) -> Vec<(String, String)> {
        let mut out = Vec::new();
        d.for_each(var, &mut |n, v, _| {
            out.push((n.to_string(), String::from_utf8_lossy(v).into_owned()))
        });
        out
    }

    #[test]
    fn request_line_variables() {
        let d = RequestData::new(tx());
        let s = |v| String::from_utf8(d.scalar(v).unwrap().into_owned()).unwrap();
        assert_eq!(s(Var::RequestUri), "/a/b.php?id=1&x=%27a");
        assert_eq!(s(Var::RequestFilename), "/a/b.php");
        assert_eq!(s(Var::RequestBasename), "b.php");
        assert_eq!(s(Var::RequestLine), "POST /a/b.php?id=1&x=%27a HTTP/1.1");
        assert_eq!(s(Var::QueryString), "id=1&x=%27a");
        assert_eq!(s(Var::RemoteAddr), "10.0.0.1");
        assert_eq!(s(Var::RemotePort), "5555");
        assert_eq!(s(Var::ServerName), "example.com");
        assert_eq!(collect(&d, Var::ArgsGet)[1], ("x".into(), "'a".into()));
        assert_eq!(
            collect(&d, Var::RequestCookiesNames),
            vec![
                ("s".to_string(), "s".to_string()),
                ("t".to_string(), "t".to_string())
            ]
        );
        assert_eq!(
            d.first(Var::RequestHeaders, "HOST"),
            Some(&b"example.com"[..])
        );
        // The body is not parsed before phase 2.
        assert!(collect(&d, Var::ArgsPost).is_empty());
    }

    #[test]
    fn url_encoded_body() {
        let mut d = RequestData::new(tx());
        d.process_body(None, false);
        assert_eq!(
            collect(&d, Var::ArgsPost),
            vec![
                ("p".to_string(), "q".to_string()),
                ("r".to_string(), "s t".to_string())
            ]
        );
        assert_eq!(collect(&d, Var::Args).len(), 4);
        assert_eq!(collect(&d, Var::ArgsNames)[3].1, "r");
        assert_eq!(&*d.scalar(Var::RequestBody).unwrap(), b"p=q&r=s+t");
        assert_eq!(&*d.scalar(Var::ReqbodyProcessor).unwrap(), b"URLENCODED");
    }

    #[test]
    fn json_multipart_and_xml_bodies() {
        let mut t = tx();
        t.headers[2].1 = b"application/json".to_vec();
        t.body = Some(br#"{"a":{"b":[1,"x"]}}"#.to_vec());
        let mut d = RequestData::new(t.clone());
        d.process_body(None, false);
        assert_eq!(
            collect(&d, Var::ArgsPost),
            vec![
                ("json.a.b.array_0".to_string(), "1".to_string()),
                ("json.a.b.array_1".to_string(), "x".to_string())
            ]
        );
        assert!(d.scalar(Var::RequestBody).is_none());
        t.body = Some(b"{broken".to_vec());
        let mut d = RequestData::new(t.clone());
        d.process_body(None, false);
        assert_eq!(&*d.scalar(Var::ReqbodyError).unwrap(), b"1");

        t.headers[2].1 = b"multipart/form-data; boundary=XyZ".to_vec();
        t.body = Some(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHoliday\r\n\
              --XyZ\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"a.jpg\"\r\n\
              Content-Type: image/jpeg\r\n\r\nJPEG\r\n--XyZ--\r\n"
                .to_vec(),
        );
        let mut d = RequestData::new(t.clone());
        d.process_body(None, false);
        assert_eq!(
            collect(&d, Var::ArgsPost),
            vec![("title".to_string(), "Holiday".to_string())]
        );
        assert_eq!(
            collect(&d, Var::Files),
            vec![("photo".to_string(), "a.jpg".to_string())]
        );
        assert_eq!(&*d.scalar(Var::FilesCombinedSize).unwrap(), b"4");

        t.headers[2].1 = b"text/xml".to_vec();
        t.body = Some(b"<a x='1'><b>hi</b> there</a>".to_vec());
        let mut d = RequestData::new(t);
        d.process_body(None, false);
        assert_eq!(
            collect(&d, Var::Xml),
            vec![("/*".to_string(), "hi there".to_string())]
        );
    }
}
