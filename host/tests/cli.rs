//! The `maitred` binary's `check` command: exit status and messages.

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
