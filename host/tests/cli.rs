//! The `maitred` binary: `check` (exit status and messages) and `run` (signals, access log).

use std::process::Command;

fn check(config: &str) -> (bool, String, String) {
    let dir = std::env::temp_dir().join(format!(
        "maitred-cli-{}-{}",
        std::process::id(),
        config.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("maitred.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_maitred"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD: &str = "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n[[route]]\nupstream = \"api\"\n[upstream.api]\nendpoints = [\"127.0.0.1:9001\"]\n";

#[test]
fn check_passes_a_good_config() {
    let (ok, stdout, stderr) = check(GOOD);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("ok (1 listeners, 1 routes, 1 upstreams, 0 plugins)"),
        "{stdout}"
    );
}

#[test]
fn check_fails_a_bad_config_naming_file_line_and_key() {
    let (ok, _, stderr) = check(&GOOD.replace("upstream = \"api\"", "upstream = \"nope\""));
    assert!(!ok);
    assert!(
        stderr.starts_with("error: ")
            && stderr.contains("maitred.toml:5:12: route[0].upstream: unknown upstream \"nope\""),
        "{stderr}"
    );
}

#[test]
fn check_fails_on_a_missing_file() {
    let out = Command::new(env!("CARGO_BIN_EXE_maitred"))
        .args(["check", "--config", "/nonexistent/maitred.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/nonexistent/maitred.toml: cannot read config file")
    );
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A backend answering every request with `200 ok` (and closing), on a thread.
fn backend() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    port
}

/// The status of `GET path` on 127.0.0.1:`port`, or `None` if nothing answers.
fn status_of(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply.split(' ').nth(1)?.parse().ok()
}

/// Polls `f` every 50 ms for up to 10 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn run_reloads_on_sighup_logs_access_and_stops_gracefully_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("maitred-cli-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (port, upstream) = (free_port(), backend());
    let access = dir.join("access.log");
    let config = |prefix: &str| {
        format!(
            "[runtime]\nworkers = 1\nshutdown_grace = \"5s\"\n[log]\naccess = \"{}\"\n\
             [[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:{port}\"\n\
             [[route]]\npath_prefix = \"{prefix}\"\nupstream = \"u\"\n\
             [upstream.u]\nendpoints = [\"127.0.0.1:{upstream}\"]\n",
            access.display()
        )
    };
    let path = dir.join("maitred.toml");
    std::fs::write(&path, config("/")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_maitred"))
        .args(["run", "--config"])
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("the proxy to answer", || status_of(port, "/a") == Some(200));

    // SIGHUP reloads: "/a" no longer has a route.
    std::fs::write(&path, config("/v2/")).unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    eventually("the reload", || status_of(port, "/a") == Some(404));
    assert_eq!(status_of(port, "/v2/x"), Some(200));

    eventually("access log lines", || {
        let log = std::fs::read_to_string(&access).unwrap_or_default();
        log.contains("\"GET /a\" 200 2 ") && log.contains("\"GET /a\" 404 ")
    });

    // SIGTERM: a graceful, successful exit.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut exited = None;
    eventually("the process to exit", || {
        exited = child.try_wait().unwrap();
        exited.is_some()
    });
    assert!(exited.unwrap().success(), "{exited:?}");
    assert_eq!(
        status_of(port, "/v2/x"),
        None,
        "still accepting after SIGTERM"
    );
}
