//! The access log: one line per request, written by its own thread.
//!
//! Workers never write: a finished request's [`AccessRecord`] goes into a bounded channel
//! (`try_send`; when the writer falls behind, records are dropped and counted, never
//! waited for) and the writer thread formats it and writes it, buffered, to stderr, stdout
//! or a file. A record is sent when the response body has been sent (or the client went
//! away), so it carries the body's byte count and the full duration.
//!
//! The format is a template (`[log] access_format`) with `{name}` fields: `time`, `client`,
//! `method`, `path`, `status`, `bytes`, `duration_ms`, `route`, `upstream`, `endpoint`,
//! `plugin_us`. With `[log] format = "json"` each line is a JSON object of all fields.

use crate::config::LogFormat;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The default template: like nginx's `combined` minus referrer/agent, plus timing.
pub const DEFAULT_FORMAT: &str = "{time} {client} \"{method} {path}\" {status} {bytes} {duration_ms}ms route={route} upstream={upstream} endpoint={endpoint} plugins={plugin_us}us";

/// Records waiting for the writer before new ones are dropped.
const QUEUE: usize = 16 * 1024;

/// One finished request.
#[derive(Debug)]
pub struct AccessRecord {
    /// When the request arrived.
    pub time: SystemTime,
    /// The client's address.
    pub client: SocketAddr,
    /// Request method.
    pub method: http::Method,
    /// Request path and query.
    pub path: String,
    /// Response status.
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    /// From request head to the end of the response body.
    pub duration: Duration,
    /// The route's index (`None`: no route matched, or the request was rejected first).
    pub route: Option<usize>,
    /// The upstream's name (empty if none was reached).
    pub upstream: String,
    /// The endpoint that answered, if any.
    pub endpoint: Option<SocketAddr>,
    /// Time spent in plugin calls.
    pub plugin_time: Duration,
}

/// The process's access log, when configured.
struct AccessLog {
    queue: SyncSender<AccessRecord>,
    dropped: AtomicU64,
}

static ACCESS_LOG: OnceLock<AccessLog> = OnceLock::new();

/// Whether an access log is configured (requests only build records then).
pub fn enabled() -> bool {
    ACCESS_LOG.get().is_some()
}

/// Queues `record` for writing; never blocks.
pub fn log(record: AccessRecord) {
    let Some(log) = ACCESS_LOG.get() else {
        return;
    };
    match log.queue.try_send(record) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            log.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Err(TrySendError::Disconnected(_)) => {}
    }
}

/// Records dropped because the writer could not keep up.
pub fn dropped() -> u64 {
    ACCESS_LOG
        .get()
        .map_or(0, |l| l.dropped.load(Ordering::Relaxed))
}

/// Starts the access log writing to `target` (`stderr`, `stdout` or a file path, appended).
/// Only the first call in a process takes effect.
pub fn start(target: &str, template: &str, format: LogFormat) -> std::io::Result<()> {
    if ACCESS_LOG.get().is_some() {
        return Ok(());
    }
    let out: Box<dyn Write + Send> = match target {
        "stderr" => Box::new(std::io::stderr()),
        "stdout" => Box::new(std::io::stdout()),
        path => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
    };
    let (queue, records) = sync_channel(QUEUE);
    let template = Template::parse(template);
    std::thread::Builder::new()
        .name("maitred-access-log".into())
        .spawn(move || write_records(records, out, template, format))?;
    let _ = ACCESS_LOG.set(AccessLog {
        queue,
        dropped: AtomicU64::new(0),
    });
    Ok(())
}

fn write_records(
    records: Receiver<AccessRecord>,
    out: Box<dyn Write + Send>,
    template: Template,
    format: LogFormat,
) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut line = String::with_capacity(256);
    while let Ok(first) = records.recv() {
        let mut next = Some(first);
        // Write everything queued, then flush once.
        while let Some(record) = next {
            line.clear();
            match format {
                LogFormat::Text => template.render(&record, &mut line),
                LogFormat::Json => render_json(&record, &mut line),
            }
            line.push('\n');
            if out.write_all(line.as_bytes()).is_err() {
                return;
            }
            next = records.try_recv().ok();
        }
        let _ = out.flush();
    }
}

/// A parsed template: literal text and fields.
struct Template(Vec<Piece>);

enum Piece {
    Text(String),
    Field(String),
}

impl Template {
    fn parse(template: &str) -> Template {
        let mut pieces = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            pieces.push(Piece::Text(rest[..open].to_owned()));
            pieces.push(Piece::Field(rest[open + 1..open + close].to_owned()));
            rest = &rest[open + close + 1..];
        }
        pieces.push(Piece::Text(rest.to_owned()));
        Template(pieces)
    }

    fn render(&self, r: &AccessRecord, out: &mut String) {
        use std::fmt::Write as _;
        for piece in &self.0 {
            let _ = match piece {
                Piece::Text(text) => write!(out, "{text}"),
                Piece::Field(name) => match name.as_str() {
                    "time" => write!(out, "{}", humantime::format_rfc3339_millis(r.time)),
                    "client" => write!(out, "{}", r.client.ip()),
                    "method" => write!(out, "{}", r.method),
                    "path" => write!(out, "{}", r.path),
                    "status" => write!(out, "{}", r.status),
                    "bytes" => write!(out, "{}", r.bytes),
                    "duration_ms" => write!(out, "{:.3}", r.duration.as_secs_f64() * 1000.0),
                    "route" => match r.route {
                        Some(route) => write!(out, "{route}"),
                        None => write!(out, "-"),
                    },
                    "upstream" => write!(
                        out,
                        "{}",
                        if r.upstream.is_empty() {
                            "-"
                        } else {
                            &r.upstream
                        }
                    ),
                    "endpoint" => match r.endpoint {
                        Some(e) => write!(out, "{e}"),
                        None => write!(out, "-"),
                    },
                    "plugin_us" => write!(out, "{}", r.plugin_time.as_micros()),
                    other => write!(out, "{{{other}}}"),
                },
            };
        }
    }
}

fn render_json(r: &AccessRecord, out: &mut String) {
    let value = serde_json::json!({
        "time": r.time.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
        "client": r.client.ip().to_string(),
        "method": r.method.as_str(),
        "path": r.path,
        "status": r.status,
        "bytes": r.bytes,
        "duration_ms": r.duration.as_secs_f64() * 1000.0,
        "route": r.route,
        "upstream": r.upstream,
        "endpoint": r.endpoint.map(|e| e.to_string()),
        "plugin_us": r.plugin_time.as_micros() as u64,
    });
    out.push_str(&value.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_fields_and_literals() {
        let record = AccessRecord {
            time: UNIX_EPOCH,
            client: "192.0.2.1:5000".parse().unwrap(),
            method: http::Method::GET,
            path: "/a?b=1".into(),
            status: 200,
            bytes: 12,
            duration: Duration::from_micros(1500),
            route: Some(2),
            upstream: "api".into(),
            endpoint: Some("10.0.0.1:80".parse().unwrap()),
            plugin_time: Duration::from_micros(7),
        };
        let mut line = String::new();
        Template::parse("{client} \"{method} {path}\" {status} {bytes} {duration_ms} {route}/{upstream}/{endpoint} {plugin_us} {nope}")
            .render(&record, &mut line);
        assert_eq!(
            line,
            "192.0.2.1 \"GET /a?b=1\" 200 12 1.500 2/api/10.0.0.1:80 7 {nope}"
        );
        let mut json = String::new();
        render_json(&record, &mut json);
        assert!(
            json.contains("\"status\":200") && json.contains("\"plugin_us\":7"),
            "{json}"
        );
    }
}
