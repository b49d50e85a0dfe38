//! The `maitred` command: `run`, `check`, and `demo`.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The demo config, embedded so `maitred demo` needs no file.
const DEMO_CONFIG: &str = include_str!("../../examples/demo.toml");

/// A programmable edge proxy whose per-route policies are WebAssembly components.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the proxy. Without --config, runs the embedded demo (as `demo` does).
    Run {
        /// The TOML config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validates a config and loads every plugin in it, like `nginx -t`.
    Check {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Runs the embedded demo config (examples/demo.toml) with its backends in-process.
    Demo,
}

/// Sets up logging: `RUST_LOG` if set, else the config's level; text or JSON lines on stderr.
fn init_logs(log: &maitred::config::LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        maitred::config::LogFormat::Text => logs.try_init(),
        maitred::config::LogFormat::Json => logs.json().try_init(),
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Check { config } => {
            init_logs(&maitred::config::LogConfig::default());
            maitred::check(&config)
                .map(|summary| println!("{summary}"))
                .map_err(anyhow::Error::from)
        }
        Command::Run {
            config: Some(config),
        } => run(&config),
        Command::Run { config: None } | Command::Demo => demo(),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &Path) -> Result<()> {
    let config = maitred::Config::load(path)?;
    serve(config)
}

fn demo() -> Result<()> {
    let origin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo.toml");
    let config = maitred::Config::from_toml(DEMO_CONFIG, &origin)?;
    let backends: Vec<_> = config
        .upstreams
        .iter()
        .flat_map(|u| u.endpoints.iter().map(|e| e.address))
        .collect();
    maitred::demo::start_backends(&backends).context("starting the demo backends")?;
    let listen = config
        .listeners
        .first()
        .map(|l| l.listen)
        .context("the demo config has no listener")?;
    println!("maitred demo: proxy on http://{listen}, demo backends on {backends:?}. Try:");
    println!(
        "  curl -i http://{listen}/api/hello            # round-robin over two backends, x-env added, server header removed"
    );
    println!(
        "  curl -i http://{listen}/api/hello -H 'x-canary: 1'   # the canary plugin sends this to api-v2"
    );
    println!("  curl -i http://{listen}/admin/               # 403 from the respond plugin");
    println!(
        "  curl -i http://{listen}/old/page             # 301 redirect from the respond plugin"
    );
    println!("  curl -i http://{listen}/nowhere              # 404: no route");
    println!("  curl -i --http2-prior-knowledge http://{listen}/api/hello   # HTTP/2 cleartext");
    serve(config)
}

/// Starts the server and serves until SIGINT or SIGTERM (then shuts down gracefully);
/// SIGHUP reloads the config file.
fn serve(config: maitred::Config) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    init_logs(&config.log);
    let grace = config.runtime.shutdown_grace;
    let server = maitred::Server::start(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    // This thread only waits for signals, so it may block on the reload;
                    // errors are logged and recorded in /status by reload itself.
                    let _ = server.reload();
                }
            }
        }
        anyhow::Ok(())
    })?;
    tracing::info!(grace = ?grace, "shutting down: no new connections, finishing open ones");
    let cut = server.shutdown_gracefully(grace);
    if cut > 0 {
        tracing::warn!("grace period over: closing {cut} connection(s)");
    }
    server.shutdown();
    Ok(())
}
