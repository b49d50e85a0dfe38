//! Project automation. Run with `cargo xtask <command>`:
//!
//! - `demo`: install the wasm target if missing, build the plugins and the proxy (release),
//!   and run the embedded demo config with its backends;
//! - `test`: install the wasm target if missing and run the whole test suite;
//! - `plugins`: build the first-party plugins into `target/wasm32-wasip2/release`;
//! - `bench`: build everything in release mode and run `bench/run.sh`; `bench --l4-tls`:
//!   build the proxy and run `bench/l4_tls.sh` (TCP throughput, TLS handshakes, HTTPS);
//!   `bench --cache`: build the proxy and run `bench/cache.sh` (cache hits, maitred's route
//!   cache against nginx `proxy_cache`); `bench --waf`: build the proxy and the `waf` plugin and
//!   run `bench/waf.sh` (the WAF with the OWASP CRS through the proxy, with and without it).

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::Command;

#[derive(Parser)]
#[command(about = "maitred project automation")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the plugins and the proxy, and run the demo.
    Demo,
    /// Run the whole test suite.
    Test,
    /// Build the first-party and example plugins for wasm32-wasip2.
    Plugins,
    /// Run the benchmarks (needs wrk and nginx; see bench/README.md).
    Bench {
        /// Run the L4 and TLS benchmark (bench/l4_tls.sh) instead of the HTTP proxy one.
        #[arg(long)]
        l4_tls: bool,
        /// Run the cache-hit benchmark (bench/cache.sh: maitred's cache vs nginx proxy_cache).
        #[arg(long, conflicts_with = "l4_tls")]
        cache: bool,
        /// Run the WAF benchmark (bench/waf.sh: the waf plugin with the OWASP CRS, with and
        /// without it).
        #[arg(long, conflicts_with_all = ["l4_tls", "cache"])]
        waf: bool,
    },
}

/// Every plugin crate built for wasm32-wasip2.
const PLUGINS: [&str; 9] = [
    "headers",
    "canary",
    "respond",
    "sni-policy",
    "balancer-affinity",
    "cache-key",
    "waf",
    "ratelimit",
    "hello-plugin",
];

fn main() -> Result<()> {
    match Cli::parse().command {
        Task::Demo => {
            build_plugins()?;
            cargo(&["run", "--release", "-p", "maitred", "--", "demo"])
        }
        Task::Test => {
            ensure_wasm_target()?;
            // The default members: host, sdk, tests (whose build script builds the plugins), xtask,
            // and the plugins with native unit tests (sni-policy, balancer-affinity, cache-key,
            // waf, ratelimit).
            cargo(&["test"])
        }
        Task::Plugins => build_plugins(),
        Task::Bench { l4_tls: true, .. } => {
            cargo(&["build", "--release", "-p", "maitred"])?;
            run(Command::new("bash").arg(root().join("bench/l4_tls.sh")))
        }
        Task::Bench { cache: true, .. } => {
            cargo(&["build", "--release", "-p", "maitred"])?;
            run(Command::new("bash").arg(root().join("bench/cache.sh")))
        }
        Task::Bench { waf: true, .. } => {
            ensure_wasm_target()?;
            cargo(&[
                "build",
                "--target",
                "wasm32-wasip2",
                "--release",
                "-p",
                "waf",
            ])?;
            cargo(&["build", "--release", "-p", "maitred"])?;
            run(Command::new("bash").arg(root().join("bench/waf.sh")))
        }
        Task::Bench { .. } => {
            build_plugins()?;
            cargo(&["build", "--release", "-p", "maitred"])?;
            run(Command::new("bash").arg(root().join("bench/run.sh")))
        }
    }
}

fn build_plugins() -> Result<()> {
    ensure_wasm_target()?;
    let mut args = vec!["build", "--target", "wasm32-wasip2", "--release"];
    for p in PLUGINS {
        args.extend(["-p", p]);
    }
    cargo(&args)
}

/// `rustup target add wasm32-wasip2` unless the target's standard library is there already.
fn ensure_wasm_target() -> Result<()> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("running rustc")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib/wasm32-wasip2").exists() {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))
}

fn cargo(args: &[&str]) -> Result<()> {
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(args)
            .current_dir(root()),
    )
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}
