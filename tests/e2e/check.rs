//! Config validation and `check`: errors name the file, the line and the key.

use maitred_tests::*;

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("maitred-check-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("maitred.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const GOOD: &str = r#"
[[listener]]
name = "web"
listen = "127.0.0.1:0"

[[route]]
listener = "web"
path_prefix = "/api/"
upstream = "api"
plugins = ["tag"]

[upstream.api]
endpoints = ["127.0.0.1:9001"]

[plugin.tag]
wasm = "PLUGIN_DIR/headers.wasm"
config = { request = { set = { "x-env" = "demo" } } }
"#;

fn good() -> String {
    GOOD.replace("PLUGIN_DIR", &plugin_dir().display().to_string())
}

#[test]
fn check_accepts_a_good_config() {
    let path = write("good", &good());
    let summary = maitred::check(&path).unwrap();
    assert!(
        summary.contains("ok (1 listeners, 1 routes, 1 upstreams, 1 plugins)"),
        "{summary}"
    );
}

fn error_of(name: &str, text: &str) -> String {
    let path = write(name, text);
    let e = maitred::check(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&path.display().to_string()),
        "error does not name the file: {e}"
    );
    e
}

#[test]
fn unknown_upstream_names_line_and_key() {
    let e = error_of(
        "unknown-upstream",
        &good().replace("upstream = \"api\"", "upstream = \"apix\""),
    );
    assert!(
        e.contains(":9:12: route[0].upstream: unknown upstream \"apix\" (defined: api)"),
        "{e}"
    );
}

#[test]
fn unknown_plugin_names_line_and_key() {
    let e = error_of(
        "unknown-plugin",
        &good().replace("plugins = [\"tag\"]", "plugins = [\"tag\", \"nope\"]"),
    );
    assert!(
        e.contains(":10:19: route[0].plugins[1]: unknown plugin \"nope\""),
        "{e}"
    );
}

#[test]
fn unknown_key_is_named() {
    let e = error_of(
        "unknown-key",
        &good().replace("path_prefix = \"/api/\"", "path_prefx = \"/api/\""),
    );
    assert!(
        e.contains(":8:1: route[0].path_prefx: unknown field `path_prefx`"),
        "{e}"
    );
}

#[test]
fn bad_address_is_named() {
    let e = error_of(
        "bad-address",
        &good().replace("127.0.0.1:9001", "127.0.0.1:99999"),
    );
    assert!(
        e.contains(":13:14: upstream.api.endpoints[0]: invalid address \"127.0.0.1:99999\""),
        "{e}"
    );
}

#[test]
fn duplicate_listener_is_named() {
    let e = error_of(
        "duplicate",
        &good().replace(
            "[[route]]",
            "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n[[route]]",
        ),
    );
    assert!(
        e.contains(":7:8: listener[1].name: duplicate listener name \"web\""),
        "{e}"
    );
}

#[test]
fn bad_duration_is_named() {
    let e = error_of(
        "duration",
        &good().replace(
            "endpoints = [\"127.0.0.1:9001\"]",
            "endpoints = [\"127.0.0.1:9001\"]\nconnect_timeout = \"5 parsecs\"",
        ),
    );
    assert!(
        e.contains(":14:19: upstream.api.connect_timeout: invalid duration \"5 parsecs\""),
        "{e}"
    );
}

#[test]
fn bad_enum_value_is_named() {
    let e = error_of(
        "on-error",
        &good().replace("[plugin.tag]", "[plugin.tag]\non_error = \"explode\""),
    );
    assert!(
        e.contains(":16:12: plugin.tag.on_error: unknown variant `explode`"),
        "{e}"
    );
}

#[test]
fn missing_plugin_file_is_reported() {
    let e = error_of(
        "missing-wasm",
        &good().replace("headers.wasm", "nothere.wasm"),
    );
    assert!(
        e.contains("plugin.tag: cannot read") && e.contains("nothere.wasm"),
        "{e}"
    );
}

#[test]
fn plugin_init_error_is_reported() {
    let e = error_of(
        "init-error",
        &good().replace(
            "config = { request = { set = { \"x-env\" = \"demo\" } } }",
            "config = { request = { set = { \"bad header\" = \"x\" } } }",
        ),
    );
    assert!(e.contains("plugin.tag: init failed"), "{e}");
}

#[test]
fn not_a_component_is_reported() {
    let path = write("not-wasm", &good());
    let junk = path.with_file_name("junk.wasm");
    std::fs::write(&junk, b"\0asm junk").unwrap();
    std::fs::write(
        &path,
        good().replace(
            &format!("{}/headers.wasm", plugin_dir().display()),
            "junk.wasm",
        ),
    )
    .unwrap();
    let e = maitred::check(&path).unwrap_err().to_string();
    assert!(
        e.contains("plugin.tag: not a valid WebAssembly component"),
        "{e}"
    );
}

#[test]
fn plugin_importing_what_the_host_does_not_offer_is_refused() {
    let e = error_of(
        "forbidden-import",
        &good().replace("headers.wasm", "forbidden.wasm"),
    );
    assert!(
        e.contains("plugin.tag: the component does not implement maitred's `filter` world"),
        "{e}"
    );
    assert!(
        e.contains("test:forbidden/raw-socket"),
        "the error should name the import: {e}"
    );
}

const STREAMS: &str = r#"
[[listener]]
name = "db"
listen = "127.0.0.1:0"
protocol = "tcp"
upstream = "api"

[[listener]]
name = "edge"
listen = "127.0.0.1:0"
protocol = "tls-passthrough"
sni = { "a.example.com" = "api" }

[upstream.api]
endpoints = ["127.0.0.1:9001"]
"#;

#[test]
fn stream_listener_errors_name_line_and_key() {
    let e = error_of(
        "tcp-no-upstream",
        &STREAMS.replace("upstream = \"api\"\n", ""),
    );
    assert!(
        e.contains(":3:8: listener[0].upstream: a tcp listener needs"),
        "{e}"
    );
    let e = error_of(
        "sni-unknown",
        &STREAMS.replace("= \"api\" }", "= \"nope\" }"),
    );
    assert!(
        e.contains(":12:27: listener[1].sni.\"a.example.com\": unknown upstream \"nope\""),
        "{e}"
    );
    let e = error_of(
        "route-on-tcp",
        &format!("{STREAMS}\n[[route]]\nlistener = \"db\"\nupstream = \"api\"\n"),
    );
    assert!(
        e.contains("route[0].listener: listener \"db\" is a tcp listener; routes attach to http and https listeners"),
        "{e}"
    );
    let e = error_of(
        "sni-on-http",
        "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nsni = { \"a\" = \"api\" }\n[upstream.api]\nendpoints = [\"127.0.0.1:1\"]\n",
    );
    assert!(
        e.contains(":4:7: listener[0].sni: only applies to tls-passthrough listeners, not http"),
        "{e}"
    );
    let e = error_of(
        "https-no-certs",
        "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"https\"\n",
    );
    assert!(
        e.contains("listener[0].certificates: an https listener needs"),
        "{e}"
    );
}

#[test]
fn filter_plugin_on_a_tcp_listener_is_refused() {
    let text = format!(
        "{STREAMS}\n[plugin.tag]\nwasm = \"{}/headers.wasm\"\n",
        plugin_dir().display()
    )
    .replace(
        "upstream = \"api\"\n",
        "upstream = \"api\"\nplugins = [\"tag\"]\n",
    );
    let e = error_of("filter-on-tcp", &text);
    assert!(
        e.contains("plugin.tag: is an HTTP filter plugin (world `filter`) but is attached where a connection plugin (world `connection-filter`) is expected"),
        "{e}"
    );
}

#[test]
fn the_operations_example_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/operations.toml");
    let summary = maitred::check(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        summary.contains("ok (2 listeners, 2 routes, 3 upstreams, 0 plugins)"),
        "{summary}"
    );
}

#[test]
fn the_edge_example_is_valid() {
    if !std::path::Path::new("/usr/share/modsecurity-crs/rules").is_dir() {
        eprintln!("skipped: Debian's modsecurity-crs is not installed");
        return;
    }
    // The example points at `cargo xtask plugins`' output; the tests build their own.
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/edge.toml");
    let text = std::fs::read_to_string(&example)
        .unwrap()
        .replace("../target/wasm32-wasip2/release/", "");
    let dir = TempDir::new("edge-example");
    let path = dir.write(
        "edge.toml",
        text.replace(
            "wasm = \"",
            &format!("wasm = \"{}/", plugin_dir().display()),
        ),
    );
    let summary = maitred::check(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        summary.contains("ok (1 listeners, 2 routes, 2 upstreams, 3 plugins)"),
        "{summary}"
    );
}
