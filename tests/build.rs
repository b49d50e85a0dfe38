//! Builds the WebAssembly plugins the tests load — the first-party ones, the example, and
//! the misbehaving test plugins — from source, as wasmtime's `test-programs` does.
//!
//! They are built by a nested `cargo build --target wasm32-wasip2 --release` into a target
//! directory of their own (the outer build holds the lock on the main one). The folder with
//! the `.wasm` files is passed to the tests as `MAITRED_TEST_PLUGINS`.

use std::path::{Path, PathBuf};
use std::process::Command;

const PLUGINS: [&str; 18] = [
    "headers",
    "canary",
    "respond",
    "sni-policy",
    "balancer-affinity",
    "cache-key",
    "waf",
    "ratelimit",
    "hello-plugin",
    "trap",
    "body-probe",
    "file-probe",
    "spin",
    "hog",
    "probe",
    "forbidden",
    "connect-probe",
    "balance-probe",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for dir in ["plugins", "sdk", "wit", "examples/plugin", "tests/plugins"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<pkg>/out.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.join("target"));
    let plugin_target = target_dir.join("plugin-build");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--target",
            "wasm32-wasip2",
            "--release",
            "--target-dir",
        ])
        .arg(&plugin_target);
    for p in PLUGINS {
        cmd.args(["-p", p]);
    }
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("running cargo to build the test plugins");
    assert!(
        status.success(),
        "building the WASM plugins failed; is the target installed? (rustup target add wasm32-wasip2)"
    );
    let wasm_dir = plugin_target.join("wasm32-wasip2").join("release");
    println!(
        "cargo:rustc-env=MAITRED_TEST_PLUGINS={}",
        wasm_dir.display()
    );
}
