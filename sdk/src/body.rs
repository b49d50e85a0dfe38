//! Request arguments from query strings, form, JSON and multipart bodies and cookies, named
//! the way ModSecurity v3 (libmodsecurity) names them, for plugins that inspect requests.
//!
//! Every function here is plain code over bytes (no host call), so it works natively too.
//! They never panic on malformed input, take time linear in the input, and report bodies
//! they cannot parse as `Err` with a short reason.
//!
//! ```
//! use maitred_sdk::body;
//!
//! assert_eq!(body::query_args("q=a+b&page=2"), [("q".into(), "a b".into()), ("page".into(), "2".into())]);
//! assert_eq!(
//!     body::json_args(br#"{"user":{"name":"ann"}}"#).unwrap(),
//!     [("json.user.name".to_string(), "ann".to_string())]
//! );
//! ```
//!
//! In a plugin, ask for the body with [`Phases::REQUEST_BODY`](crate::Phases::REQUEST_BODY)
//! and choose the parser by `Content-Type`:
//!
//! ```ignore
//! let args = match (req.body(), req.header_str("content-type")) {
//!     (Some(b), Some(ct)) if ct.starts_with("application/x-www-form-urlencoded") => body::form_args(&b),
//!     (Some(b), Some(ct)) if ct.starts_with("application/json") => body::json_args(&b)?,
//!     (Some(b), Some(ct)) if ct.starts_with("multipart/form-data") => body::multipart(&b, &ct)?.args,
//!     _ => Vec::new(),
//! };
//! ```

/// The arguments of a query string (without the leading `?`), in order: the same rules as
/// [`form_args`].
///
/// ```
/// use maitred_sdk::body::query_args;
///
/// assert_eq!(
///     query_args("id=7&tag=a%20b&tag=c&flag"),
///     [
///         ("id".to_string(), "7".to_string()),
///         ("tag".to_string(), "a b".to_string()),
///         ("tag".to_string(), "c".to_string()),
///         ("flag".to_string(), String::new()),
///     ]
/// );
/// ```
pub fn query_args(query: &str) -> Vec<(String, String)> {
    form_args(query.as_bytes())
}

/// The arguments of an `application/x-www-form-urlencoded` body, in order, repeated names
/// repeated.
///
/// Pairs are split on `&` (empty pairs skipped) and at the first `=`; a pair without `=` is a
/// name with an empty value. Names and values are decoded: `+` is a space, `%XX` a byte;
/// a `%` not followed by two hex digits stays as it is (as ModSecurity's non-strict decoding
/// does). Bytes that are not UTF-8 become U+FFFD.
///
/// ```
/// use maitred_sdk::body::form_args;
///
/// assert_eq!(
///     form_args(b"user=ann+lee&note=50%25+off&bad=%zz&=x"),
///     [
///         ("user".to_string(), "ann lee".to_string()),
///         ("note".to_string(), "50% off".to_string()),
///         ("bad".to_string(), "%zz".to_string()),
///         (String::new(), "x".to_string()),
///     ]
/// );
/// ```
pub fn form_args(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = split_once(pair, b'=').unwrap_or((pair, b""));
            (form_decode(name), form_decode(value))
        })
        .collect()
}

/// The cookies of a request's `Cookie` header values (pass them all, e.g.
/// `req.header_all("cookie")`), in order, as ModSecurity's `REQUEST_COOKIES` holds them.
///
/// Each value is split on `;`; each pair is trimmed and split at the first `=`. A pair without
/// `=` is a cookie with an empty value; empty pairs are skipped. Values are kept as sent
/// (quotes and `%` escapes included), unlike [`Request::cookie`](crate::Request::cookie),
/// which unquotes. Bytes that are not UTF-8 become U+FFFD.
///
/// ```
/// use maitred_sdk::body::cookies;
///
/// let headers = vec![b"session=abc; theme=\"dark\"".to_vec(), b"flag;  lang = de ".to_vec()];
/// assert_eq!(
///     cookies(&headers),
///     [
///         ("session".to_string(), "abc".to_string()),
///         ("theme".to_string(), "\"dark\"".to_string()),
///         ("flag".to_string(), String::new()),
///         ("lang".to_string(), "de".to_string()),
///     ]
/// );
/// ```
pub fn cookies<I>(header_values: I) -> Vec<(String, String)>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut out = Vec::new();
    for header in header_values {
        for pair in header.as_ref().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            if pair.is_empty() {
                continue;
            }
            let (name, value) = split_once(pair, b'=').unwrap_or((pair, b""));
            out.push((lossy(name.trim_ascii()), lossy(value.trim_ascii())));
        }
    }
    out
}

/// How deep JSON objects and arrays may nest before [`json_args`] gives up.
///
/// ```
/// let deep = "[".repeat(maitred_sdk::body::MAX_JSON_DEPTH + 1);
/// assert!(maitred_sdk::body::json_args(deep.as_bytes()).is_err());
/// ```
pub const MAX_JSON_DEPTH: usize = 256;

/// The arguments of a JSON body, flattened as libmodsecurity's JSON body processor names them
/// (`ARGS:json.a.b`), in document order, repeated keys repeated.
///
/// - The document itself is `json`; an object member adds `.` and its key (an empty key is
///   `empty-key`); an array element adds `.array_` and its index from 0.
/// - Strings give their unescaped text, numbers their text as written, `true`/`false` those
///   words, `null` an empty value. Empty objects and arrays give nothing.
///
/// ```
/// use maitred_sdk::body::json_args;
///
/// let args = json_args(br#"{"a": {"b": [1, "x", {"c": null}]}, "ok": true}"#).unwrap();
/// assert_eq!(
///     args,
///     [
///         ("json.a.b.array_0".to_string(), "1".to_string()),
///         ("json.a.b.array_1".to_string(), "x".to_string()),
///         ("json.a.b.array_2.c".to_string(), String::new()),
///         ("json.ok".to_string(), "true".to_string()),
///     ]
/// );
/// assert_eq!(json_args(b"[10, 20]").unwrap()[1], ("json.array_1".into(), "20".into()));
/// ```
///
/// Errors (with the byte offset) on anything that is not one valid JSON value, nesting deeper
/// than [`MAX_JSON_DEPTH`], or flattened names and values over 16 times the body's size plus
/// 1 MiB (names repeat their parents' keys, so deep documents grow when flattened).
///
/// ```
/// use maitred_sdk::body::json_args;
///
/// assert!(json_args(br#"{"a": 1,}"#).is_err());
/// assert!(json_args(br#"{"a": 1} x"#).is_err());
/// ```
pub fn json_args(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    JsonFlattener {
        input: body,
        pos: 0,
        out: Vec::new(),
        budget: body.len().saturating_mul(16).saturating_add(1 << 20),
    }
    .run()
}

/// A file upload in a multipart body: ModSecurity's `FILES_NAMES` (the field) and `FILES`
/// (the file name), with `FILES_SIZES`.
///
/// ```
/// use maitred_sdk::body::FilePart;
///
/// let f = FilePart { field: "avatar".into(), filename: "me.png".into(), size: 2048 };
/// assert_eq!(f.filename, "me.png");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePart {
    /// The form field's name (`name=` of the part's `Content-Disposition`).
    pub field: String,
    /// The file name as the client sent it (`filename=`, or the decoded `filename*=`); may be
    /// empty (a file input left empty) and may contain path separators.
    pub filename: String,
    /// The part's content length in bytes.
    pub size: usize,
}

/// A parsed `multipart/form-data` body.
///
/// ```
/// use maitred_sdk::body::Multipart;
///
/// let m = Multipart::default();
/// assert!(m.args.is_empty() && m.files.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Multipart {
    /// Fields that are not files, as (name, content) in order (ModSecurity's `ARGS_POST`).
    /// Bytes that are not UTF-8 become U+FFFD.
    pub args: Vec<(String, String)>,
    /// Parts with a `filename` (even an empty one), in order. Their content is not kept.
    pub files: Vec<FilePart>,
    /// Every part's header lines as (field name, `Name: value` line), in order
    /// (ModSecurity's `MULTIPART_PART_HEADERS`).
    pub part_headers: Vec<(String, String)>,
}

/// Parses a `multipart/form-data` body, given the request's `Content-Type` (which carries the
/// boundary).
///
/// Lines may end in CRLF or a bare LF; the preamble and epilogue are ignored; a
/// `filename*=UTF-8''...` (RFC 8187) wins over `filename=`.
///
/// ```
/// use maitred_sdk::body::{multipart, FilePart};
///
/// let body = b"--XyZ\r\n\
///     Content-Disposition: form-data; name=\"title\"\r\n\r\n\
///     Holiday\r\n\
///     --XyZ\r\n\
///     Content-Disposition: form-data; name=\"photo\"; filename=\"beach.jpg\"\r\n\
///     Content-Type: image/jpeg\r\n\r\n\
///     JPEGDATA\r\n\
///     --XyZ--\r\n";
/// let m = multipart(body, "multipart/form-data; boundary=XyZ").unwrap();
/// assert_eq!(m.args, [("title".to_string(), "Holiday".to_string())]);
/// assert_eq!(m.files, [FilePart { field: "photo".into(), filename: "beach.jpg".into(), size: 8 }]);
/// assert_eq!(m.part_headers[2], ("photo".to_string(), "Content-Type: image/jpeg".to_string()));
/// ```
///
/// Errors when the content type has no boundary, no boundary line is found, the final
/// boundary (`--XyZ--`) is missing, or a part's headers are unterminated or lack a
/// `Content-Disposition: form-data` with a `name` — the cases ModSecurity treats as a request
/// body error.
///
/// ```
/// use maitred_sdk::body::multipart;
///
/// assert!(multipart(b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx", "multipart/form-data; boundary=b").is_err());
/// assert!(multipart(b"", "multipart/form-data").is_err());
/// ```
pub fn multipart(body: &[u8], content_type: &str) -> Result<Multipart, String> {
    let boundary = boundary(content_type)?;
    let mut delimiter = b"--".to_vec();
    delimiter.extend_from_slice(boundary.as_bytes());

    let mut result = Multipart::default();
    // Position just after a delimiter line's `--boundary`.
    let mut pos = if body.starts_with(&delimiter) {
        delimiter.len()
    } else {
        next_delimiter(body, 0, &delimiter)
            .ok_or("multipart: no boundary line")?
            .1
    };
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Ok(result);
        }
        // Transport padding, then the line break.
        let padding = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let line_end = match &rest[padding..] {
            [b'\r', b'\n', ..] => padding + 2,
            [b'\n', ..] => padding + 1,
            [] => return Err("multipart: final boundary missing".into()),
            _ => return Err("multipart: junk after a boundary".into()),
        };
        let part_start = pos + line_end;
        let (content_end, next) = next_delimiter(body, part_start, &delimiter)
            .ok_or("multipart: final boundary missing")?;
        parse_part(&body[part_start..content_end], &mut result)?;
        pos = next;
    }
}

/// Finds the next delimiter line (`--boundary` at the start of a line) at or after `from`:
/// returns where the content before it ends (before the line break) and where the
/// delimiter ends.
fn next_delimiter(body: &[u8], from: usize, delimiter: &[u8]) -> Option<(usize, usize)> {
    let mut at = from;
    while let Some(nl) = body[at..].iter().position(|&b| b == b'\n') {
        let line = at + nl + 1;
        if body[line..].starts_with(delimiter) {
            let mut end = at + nl;
            if end > from && body[end - 1] == b'\r' {
                end -= 1;
            }
            return Some((end, line + delimiter.len()));
        }
        at = line;
    }
    None
}

/// Parses one part (headers, blank line, content) into `out`.
fn parse_part(part: &[u8], out: &mut Multipart) -> Result<(), String> {
    let mut pos = 0;
    let mut headers: Vec<Vec<u8>> = Vec::new();
    loop {
        let nl = part[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("multipart: part headers not terminated")?;
        let mut line = &part[pos..pos + nl];
        pos += nl + 1;
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.is_empty() {
            break;
        }
        match headers.last_mut() {
            // A folded line continues the previous header.
            Some(last) if matches!(line[0], b' ' | b'\t') => {
                last.push(b' ');
                last.extend_from_slice(line.trim_ascii());
            }
            _ => headers.push(line.to_vec()),
        }
    }
    let content = &part[pos..];

    let disposition = headers
        .iter()
        .filter_map(|h| split_once(h, b':'))
        .find(|(name, _)| {
            name.trim_ascii()
                .eq_ignore_ascii_case(b"content-disposition")
        })
        .map(|(_, value)| value)
        .ok_or("multipart: part without Content-Disposition")?;
    let (kind, params) = split_once(disposition, b';').unwrap_or((disposition, b""));
    if !kind.trim_ascii().eq_ignore_ascii_case(b"form-data") {
        return Err("multipart: Content-Disposition is not form-data".into());
    }
    let params = parameters(params);
    let param = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    };
    let field = lossy(param("name").ok_or("multipart: part without a name")?);
    let filename = param("filename*")
        .and_then(|v| ext_value(v))
        .or_else(|| param("filename").map(|v| lossy(v)));

    for header in &headers {
        out.part_headers.push((field.clone(), lossy(header)));
    }
    match filename {
        Some(filename) => out.files.push(FilePart {
            field,
            filename,
            size: content.len(),
        }),
        None => out.args.push((field, lossy(content))),
    }
    Ok(())
}

/// The boundary from a `multipart/...` content type.
fn boundary(content_type: &str) -> Result<String, String> {
    let (media, params) = split_once(content_type.as_bytes(), b';')
        .ok_or("multipart: content type has no boundary")?;
    if !media
        .trim_ascii()
        .to_ascii_lowercase()
        .starts_with(b"multipart/")
    {
        return Err("multipart: content type is not multipart".into());
    }
    let params = parameters(params);
    let boundary = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| lossy(v))
        .ok_or("multipart: content type has no boundary")?;
    // RFC 2046 allows 1 to 70 characters; some clients go a little over.
    if boundary.is_empty() || boundary.len() > 200 {
        return Err("multipart: boundary empty or too long".into());
    }
    Ok(boundary)
}

/// Splits `; a=1; b="x;y"` into (name, value) pairs: names trimmed, values trimmed or
/// unquoted (with `\` escapes). Pairs without `=` get an empty value.
fn parameters(s: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < s.len() {
        let name_end = s[pos..]
            .iter()
            .position(|&b| b == b'=' || b == b';')
            .map_or(s.len(), |i| pos + i);
        let name = lossy(s[pos..name_end].trim_ascii());
        pos = name_end;
        let mut value = Vec::new();
        if s.get(pos) == Some(&b'=') {
            pos += 1;
            while s.get(pos).is_some_and(|b| b.is_ascii_whitespace()) {
                pos += 1;
            }
            if s.get(pos) == Some(&b'"') {
                pos += 1;
                while let Some(&b) = s.get(pos) {
                    pos += 1;
                    match b {
                        b'"' => break,
                        b'\\' if pos < s.len() => {
                            value.push(s[pos]);
                            pos += 1;
                        }
                        _ => value.push(b),
                    }
                }
                // Anything between the closing quote and the next `;` is dropped.
            } else {
                let end = s[pos..]
                    .iter()
                    .position(|&b| b == b';')
                    .map_or(s.len(), |i| pos + i);
                value = s[pos..end].trim_ascii().to_vec();
                pos = end;
            }
        }
        while pos < s.len() && s[pos] != b';' {
            pos += 1;
        }
        pos += 1;
        if !name.is_empty() {
            out.push((name, value));
        }
    }
    out
}

/// Decodes an RFC 8187 `charset'language'percent-encoded` value (UTF-8 or ISO-8859-1).
fn ext_value(value: &[u8]) -> Option<String> {
    let mut it = value.splitn(3, |&b| b == b'\'');
    let (charset, _language, encoded) = (it.next()?, it.next()?, it.next()?);
    let bytes = percent_decode(encoded, false);
    if charset.eq_ignore_ascii_case(b"utf-8") {
        Some(lossy(&bytes))
    } else if charset.eq_ignore_ascii_case(b"iso-8859-1") {
        Some(bytes.iter().map(|&b| char::from(b)).collect())
    } else {
        None
    }
}

/// `application/x-www-form-urlencoded` decoding of a name or value.
fn form_decode(s: &[u8]) -> String {
    lossy(&percent_decode(s, true))
}

/// Decodes `%XX` (and `+` as a space if `plus`); invalid escapes stay as they are.
fn percent_decode(s: &[u8], plus: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' if let Some(byte) = s.get(i + 1..i + 3).and_then(hex2) => {
                out.push(byte);
                i += 3;
                continue;
            }
            b'+' if plus => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Two hex digits as a byte.
fn hex2(digits: &[u8]) -> Option<u8> {
    Some(hex(digits[0])? << 4 | hex(digits[1])?)
}

/// One hex digit's value.
fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// Bytes as text, invalid UTF-8 as U+FFFD.
fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Splits at the first `sep`.
fn split_once(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&b| b == sep)?;
    Some((&s[..i], &s[i + 1..]))
}

/// One open object or array while flattening JSON: the name its members extend, and the
/// current member's key (objects) or the next element's index (arrays).
enum Frame {
    Object { name: String, key: String },
    Array { name: String, index: usize },
}

/// What the JSON parser expects next.
#[derive(Clone, Copy)]
enum Expect {
    Value,
    /// A key, or `}` when `first` (an object just opened).
    Key {
        first: bool,
    },
    /// A value or `]` (an array just opened).
    FirstElement,
    /// `,` or the end of the enclosing object or array (or of the input at the top).
    Separator,
}

/// An iterative (stack-bounded) JSON parser that emits flattened arguments.
struct JsonFlattener<'a> {
    input: &'a [u8],
    pos: usize,
    out: Vec<(String, String)>,
    /// Bytes of names and values still allowed in `out`.
    budget: usize,
}

impl JsonFlattener<'_> {
    fn run(mut self) -> Result<Vec<(String, String)>, String> {
        let mut stack: Vec<Frame> = Vec::new();
        let mut expect = Expect::Value;
        loop {
            self.skip_whitespace();
            match expect {
                Expect::Key { first } => {
                    if first && self.eat(b'}') {
                        stack.pop();
                        expect = Expect::Separator;
                        continue;
                    }
                    if self.peek() != Some(b'"') {
                        return Err(self.error("expected a key"));
                    }
                    let key = self.string()?;
                    self.skip_whitespace();
                    if !self.eat(b':') {
                        return Err(self.error("expected ':'"));
                    }
                    if let Some(Frame::Object { key: k, .. }) = stack.last_mut() {
                        *k = key;
                    }
                    expect = Expect::Value;
                }
                Expect::FirstElement if self.eat(b']') => {
                    stack.pop();
                    expect = Expect::Separator;
                }
                Expect::Value | Expect::FirstElement => {
                    let name = match stack.last_mut() {
                        None => "json".to_string(),
                        Some(Frame::Object { name, key }) if key.is_empty() => {
                            format!("{name}.empty-key")
                        }
                        Some(Frame::Object { name, key }) => format!("{name}.{key}"),
                        Some(Frame::Array { name, index }) => {
                            *index += 1;
                            format!("{name}.array_{}", *index - 1)
                        }
                    };
                    match self.peek() {
                        Some(open @ (b'{' | b'[')) => {
                            if stack.len() >= MAX_JSON_DEPTH {
                                return Err(self.error("nested too deeply"));
                            }
                            self.pos += 1;
                            if open == b'{' {
                                stack.push(Frame::Object {
                                    name,
                                    key: String::new(),
                                });
                                expect = Expect::Key { first: true };
                            } else {
                                stack.push(Frame::Array { name, index: 0 });
                                expect = Expect::FirstElement;
                            }
                            continue;
                        }
                        _ => {
                            let value = self.scalar()?;
                            self.emit(name, value)?;
                            expect = Expect::Separator;
                        }
                    }
                }
                Expect::Separator => match stack.last() {
                    None if self.pos == self.input.len() => return Ok(self.out),
                    None => return Err(self.error("trailing characters")),
                    Some(Frame::Object { .. }) if self.eat(b',') => {
                        expect = Expect::Key { first: false }
                    }
                    Some(Frame::Object { .. }) if self.eat(b'}') => {
                        stack.pop();
                    }
                    Some(Frame::Array { .. }) if self.eat(b',') => expect = Expect::Value,
                    Some(Frame::Array { .. }) if self.eat(b']') => {
                        stack.pop();
                    }
                    Some(_) => return Err(self.error("expected ',' or a closing bracket")),
                },
            }
        }
    }

    fn emit(&mut self, name: String, value: String) -> Result<(), String> {
        let size = name.len() + value.len();
        if size > self.budget {
            return Err(self.error("flattened arguments too large"));
        }
        self.budget -= size;
        self.out.push((name, value));
        Ok(())
    }

    /// A string, number, `true`, `false` or `null` (as an empty string).
    fn scalar(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => {
                for (word, value) in [("true", "true"), ("false", "false"), ("null", "")] {
                    if self.input[self.pos..].starts_with(word.as_bytes()) {
                        self.pos += word.len();
                        return Ok(value.to_string());
                    }
                }
                Err(self.error("expected a value"))
            }
        }
    }

    /// A number's text, checked against the JSON grammar.
    fn number(&mut self) -> Result<String, String> {
        let start = self.pos;
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("invalid number")),
        }
        if self.eat(b'.') {
            if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return Err(self.error("invalid number"));
            }
            self.digits();
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return Err(self.error("invalid number"));
            }
            self.digits();
        }
        Ok(lossy(&self.input[start..self.pos]))
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    /// A string at `"`, unescaped. Invalid UTF-8 and lone surrogates become U+FFFD.
    fn string(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut bytes = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error("unterminated string"));
            };
            self.pos += 1;
            match b {
                b'"' => return Ok(lossy(&bytes)),
                b'\\' => {
                    let escape = self.peek();
                    self.pos += 1;
                    let c = match escape {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => self.unicode_escape()?,
                        _ => return Err(self.error("invalid escape")),
                    };
                    bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                0..=0x1f => return Err(self.error("control character in string")),
                _ => bytes.push(b),
            }
        }
    }

    /// The code point of a `\u` escape whose `\u` is consumed (joining a surrogate pair).
    fn unicode_escape(&mut self) -> Result<char, String> {
        let high = self.hex4()?;
        if (0xd800..0xdc00).contains(&high)
            && self.input[self.pos..].starts_with(b"\\u")
            && let Some(low) = self
                .input
                .get(self.pos + 2..self.pos + 6)
                .and_then(hex4)
                .filter(|low| (0xdc00..0xe000).contains(low))
        {
            self.pos += 6;
            let c = 0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00);
            return Ok(char::from_u32(c).unwrap_or('\u{fffd}'));
        }
        Ok(char::from_u32(high).unwrap_or('\u{fffd}'))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .input
            .get(self.pos..self.pos + 4)
            .and_then(hex4)
            .ok_or_else(|| self.error("invalid \\u escape"))?;
        self.pos += 4;
        Ok(digits)
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let matched = self.peek() == Some(b);
        if matched {
            self.pos += 1;
        }
        matched
    }

    fn error(&self, what: &str) -> String {
        format!("json: {what} at byte {}", self.pos)
    }
}

/// Four hex digits as a number.
fn hex4(digits: &[u8]) -> Option<u32> {
    digits
        .iter()
        .try_fold(0u32, |acc, &b| Some(acc << 4 | u32::from(hex(b)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn form_decoding() {
        assert_eq!(form_args(b""), pairs(&[]));
        assert_eq!(form_args(b"&&"), pairs(&[]));
        assert_eq!(form_args(b"a"), pairs(&[("a", "")]));
        assert_eq!(form_args(b"a="), pairs(&[("a", "")]));
        assert_eq!(form_args(b"a=b=c"), pairs(&[("a", "b=c")]));
        assert_eq!(form_args(b"a=1&a=2"), pairs(&[("a", "1"), ("a", "2")]));
        assert_eq!(
            form_args(b"k%5B%5D=%3Cscript%3E"),
            pairs(&[("k[]", "<script>")])
        );
        assert_eq!(form_args(b"a=%41%4a%4A"), pairs(&[("a", "AJJ")]));
        assert_eq!(form_args(b"a=%2b+%20"), pairs(&[("a", "+  ")]));
        // Invalid or truncated escapes stay.
        assert_eq!(form_args(b"a=%"), pairs(&[("a", "%")]));
        assert_eq!(form_args(b"a=%4"), pairs(&[("a", "%4")]));
        assert_eq!(form_args(b"a=%g1%%41"), pairs(&[("a", "%g1%A")]));
        // Not UTF-8.
        assert_eq!(form_args(b"a=%ff\xfe"), pairs(&[("a", "\u{fffd}\u{fffd}")]));
        assert_eq!(form_args("é=ü".as_bytes()), pairs(&[("é", "ü")]));
        assert_eq!(query_args("x=1;y=2"), pairs(&[("x", "1;y=2")]));
    }

    #[test]
    fn cookie_pairs() {
        assert_eq!(cookies(Vec::<Vec<u8>>::new()), pairs(&[]));
        assert_eq!(cookies([b"; ;".as_slice()]), pairs(&[]));
        assert_eq!(cookies(["a=1;b=2"]), pairs(&[("a", "1"), ("b", "2")]));
        assert_eq!(cookies(["a=b=c; =v"]), pairs(&[("a", "b=c"), ("", "v")]));
        assert_eq!(cookies(["a=%41"]), pairs(&[("a", "%41")]));
        assert_eq!(cookies([b"a=\xff".as_slice()]), pairs(&[("a", "\u{fffd}")]));
    }

    #[test]
    fn json_naming_follows_libmodsecurity() {
        let args = |s: &str| json_args(s.as_bytes()).unwrap();
        assert_eq!(args(r#""x""#), pairs(&[("json", "x")]));
        assert_eq!(args("  42 "), pairs(&[("json", "42")]));
        assert_eq!(args("{}"), pairs(&[]));
        assert_eq!(args("[]"), pairs(&[]));
        assert_eq!(args(r#"{"a":{},"b":[]}"#), pairs(&[]));
        assert_eq!(
            args(r#"{"a":"1","a":"2"}"#),
            pairs(&[("json.a", "1"), ("json.a", "2")])
        );
        assert_eq!(args(r#"{"":1}"#), pairs(&[("json.empty-key", "1")]));
        assert_eq!(
            args(r#"[[1,2],[3]]"#),
            pairs(&[
                ("json.array_0.array_0", "1"),
                ("json.array_0.array_1", "2"),
                ("json.array_1.array_0", "3"),
            ])
        );
        assert_eq!(
            args(r#"{"a":[{"b":1},{"b":2}],"c":{"d":{"e":false}}}"#),
            pairs(&[
                ("json.a.array_0.b", "1"),
                ("json.a.array_1.b", "2"),
                ("json.c.d.e", "false"),
            ])
        );
        // Keys containing dots are kept as they are.
        assert_eq!(args(r#"{"a.b":1}"#), pairs(&[("json.a.b", "1")]));
        // Numbers as written.
        assert_eq!(
            args("[-0, 1.50, 2e10, -3.1E-2]"),
            pairs(&[
                ("json.array_0", "-0"),
                ("json.array_1", "1.50"),
                ("json.array_2", "2e10"),
                ("json.array_3", "-3.1E-2"),
            ])
        );
    }

    #[test]
    fn json_strings() {
        let one = |s: &str| json_args(s.as_bytes()).unwrap().remove(0).1;
        assert_eq!(one(r#""a\"b\\c\/d\n\t""#), "a\"b\\c/d\n\t");
        assert_eq!(one(r#""\u003cscript\u003E""#), "<script>");
        assert_eq!(one(r#""\ud83d\ude00""#), "😀");
        assert_eq!(one(r#""\ud83d""#), "\u{fffd}");
        assert_eq!(one(r#""\ud83dx""#), "\u{fffd}x");
        assert_eq!(one(r#""\ude00\ud83d""#), "\u{fffd}\u{fffd}");
        assert_eq!(one("\"é\""), "é");
        assert_eq!(json_args(b"[\"\xff\"]").unwrap()[0].1, "\u{fffd}");
    }

    #[test]
    fn json_errors() {
        for bad in [
            "",
            " ",
            "{",
            "[",
            "[1",
            "[1,",
            "[1,]",
            "[,1]",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{a:1}"#,
            r#"{"a" 1}"#,
            "[1 2]",
            "]",
            "}",
            "[}",
            "{]",
            "01",
            "-",
            "1.",
            "1e",
            ".5",
            "+1",
            "tru",
            "nul",
            "True",
            "\"abc",
            "\"\\x\"",
            "\"\\u12\"",
            "\"a\nb\"",
            "1 2",
            "{} {}",
            "NaN",
        ] {
            assert!(json_args(bad.as_bytes()).is_err(), "{bad:?} parsed");
        }
        assert!(json_args(b"[1, x]").unwrap_err().contains("at byte 4"));
    }

    #[test]
    fn json_bounds() {
        let depth = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        assert!(json_args(depth(MAX_JSON_DEPTH).as_bytes()).is_ok());
        assert!(json_args(depth(MAX_JSON_DEPTH + 1).as_bytes()).is_err());
        // A million nested brackets fail fast without recursion.
        assert!(json_args("[".repeat(1_000_000).as_bytes()).is_err());
        // Names repeat the path: deep nesting with many values runs out of budget.
        let many = format!(
            "{}{}{}",
            "{\"abcdefghijklmnopqrstuvwxyz\":".repeat(200),
            "[".to_string() + &"1,".repeat(100_000) + "1]",
            "}".repeat(200)
        );
        assert!(
            json_args(many.as_bytes())
                .unwrap_err()
                .contains("too large")
        );
    }

    const CT: &str = "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW";

    fn form(parts: &[&str]) -> Vec<u8> {
        let mut body = String::new();
        for part in parts {
            body += "------WebKitFormBoundary7MA4YWxkTrZu0gW\r\n";
            body += part;
            body += "\r\n";
        }
        body += "------WebKitFormBoundary7MA4YWxkTrZu0gW--\r\n";
        body.into_bytes()
    }

    #[test]
    fn multipart_fields_and_files() {
        let body = form(&[
            "Content-Disposition: form-data; name=\"a\"\r\n\r\none\r\ntwo",
            "content-disposition: FORM-DATA; NAME=b\r\n\r\n",
            "Content-Disposition: form-data; name=\"up\"; filename=\"C:\\\\x\\\\a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n",
            "Content-Disposition: form-data; name=\"empty\"; filename=\"\"\r\nContent-Type: application/octet-stream\r\n\r\n",
            "Content-Disposition: form-data; name=\"u\"; filename=\"x\"; filename*=UTF-8''%E2%82%AC.txt\r\n\r\n\x00\x01",
        ]);
        let m = multipart(&body, CT).unwrap();
        assert_eq!(m.args, pairs(&[("a", "one\r\ntwo"), ("b", "")]));
        assert_eq!(
            m.files,
            [
                FilePart {
                    field: "up".into(),
                    filename: "C:\\x\\a.txt".into(),
                    size: 7
                },
                FilePart {
                    field: "empty".into(),
                    filename: String::new(),
                    size: 0
                },
                FilePart {
                    field: "u".into(),
                    filename: "€.txt".into(),
                    size: 2
                },
            ]
        );
        assert_eq!(m.part_headers.len(), 7);
        assert_eq!(
            m.part_headers[3],
            ("up".to_string(), "Content-Type: text/plain".to_string())
        );
    }

    #[test]
    fn multipart_framing() {
        let ct = "multipart/form-data; charset=utf-8; boundary=\"b c\"";
        // Preamble, LF line ends, transport padding, folded header, epilogue.
        let body =
            b"preamble\n--b c  \nContent-Disposition: form-data;\n  name=x\n\nv\n--b c--\nepilogue";
        let m = multipart(body, ct).unwrap();
        assert_eq!(m.args, pairs(&[("x", "v")]));
        // A boundary-like line inside content that is not the delimiter line.
        let body = b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\n-b\r\nx--b\r\n--b--";
        let m = multipart(body, "multipart/form-data; boundary=b").unwrap();
        assert_eq!(m.args, pairs(&[("x", "-b\r\nx--b")]));
        // No parts at all.
        assert_eq!(
            multipart(b"--b--", "multipart/form-data; boundary=b").unwrap(),
            Multipart::default()
        );
    }

    #[test]
    fn multipart_errors() {
        let ok_part = "--b\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n";
        for (body, ct) in [
            ("--b--", "multipart/form-data"),
            ("--b--", "multipart/form-data; boundary="),
            ("--b--", "multipart/form-data; boundary=\"\""),
            ("--b--", "text/plain; boundary=b"),
            ("--b--", "multipart/form-data; boundary=c"),
            ("", "multipart/form-data; boundary=b"),
            (ok_part, "multipart/form-data; boundary=b"),
            ("--b\r\n", "multipart/form-data; boundary=b"),
            ("--b", "multipart/form-data; boundary=b"),
            ("--bx\r\n\r\n--b--", "multipart/form-data; boundary=b"),
            (
                "--b\r\nContent-Disposition: form-data; name=a\r\n--b--",
                "multipart/form-data; boundary=b",
            ),
            (
                "--b\r\nContent-Type: text/plain\r\n\r\nv\r\n--b--",
                "multipart/form-data; boundary=b",
            ),
            (
                "--b\r\nContent-Disposition: attachment; name=a\r\n\r\nv\r\n--b--",
                "multipart/form-data; boundary=b",
            ),
            (
                "--b\r\nContent-Disposition: form-data; filename=a\r\n\r\nv\r\n--b--",
                "multipart/form-data; boundary=b",
            ),
        ] {
            assert!(
                multipart(body.as_bytes(), ct).is_err(),
                "{body:?} with {ct:?} parsed"
            );
        }
        let long = format!("multipart/form-data; boundary={}", "x".repeat(201));
        assert!(multipart(b"", &long).is_err());
    }

    #[test]
    fn parameter_parsing() {
        let p = parameters(br#" name="a\"b;c" ; filename = x ; flag; ="v"; q="unterminated"#);
        let p: Vec<_> = p.into_iter().map(|(k, v)| (k, lossy(&v))).collect();
        assert_eq!(
            p,
            pairs(&[
                ("name", "a\"b;c"),
                ("filename", "x"),
                ("flag", ""),
                ("q", "unterminated")
            ])
        );
        assert_eq!(ext_value(b"iso-8859-1'en'%A3").as_deref(), Some("£"));
        assert_eq!(ext_value(b"koi8-r''x"), None);
        assert_eq!(ext_value(b"no quotes"), None);
    }

    #[test]
    fn never_panics_on_prefixes_of_valid_input() {
        let mut body = form(&[
            "Content-Disposition: form-data; name=\"a\"\r\n\r\nv",
            "Content-Disposition: form-data; name=\"f\"; filename=\"x\"\r\n\r\ndata",
        ]);
        body.extend_from_slice(br#"{"a":[1,{"b":"\u00e9\ud83d\ude00"}],"c":-1.5e3}"#);
        for end in 0..=body.len() {
            let _ = multipart(&body[..end], CT);
            let _ = json_args(&body[..end]);
            let _ = form_args(&body[..end]);
            let _ = cookies([&body[..end]]);
            let _ = multipart(&body[end..], CT);
            let _ = json_args(&body[end..]);
        }
    }
}
