//! `tuttid`: the Tutti soft bus daemon for Linux hosts (see `docs/softbus/daemon.md`).
//!
//! Reads `config.json` from the state directory (writing the defaults on first start),
//! applies the command-line overrides, and runs until SIGINT or SIGTERM. Logs go to standard
//! error through `tracing`; `RUST_LOG` (or `--log`) sets the filter, `info` by default.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tuttid::config::Config;
use tuttid::state::{default_state_dir, StateDir, CONFIG_FILE};

/// The Tutti soft bus daemon.
#[derive(Debug, Parser)]
#[command(name = "tuttid", version, about)]
struct Args {
    /// State directory (key store, trust store, config, API socket).
    /// Default: $XDG_STATE_HOME/tutti or ~/.local/state/tutti.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Device name other devices see (overrides `name`).
    #[arg(long)]
    name: Option<String>,
    /// Address both the session listener and the discovery socket bind (overrides
    /// `session.bind` and `discovery.bind`).
    #[arg(long)]
    bind: Option<IpAddr>,
    /// TCP port of sessions and pairing; 0 picks a free one (overrides `session.port`).
    #[arg(long)]
    session_port: Option<u16>,
    /// UDP port of discovery (overrides `discovery.port`).
    #[arg(long)]
    discovery_port: Option<u16>,
    /// Also send discovery to this unicast address; repeatable (adds to `discovery.peers`).
    #[arg(long = "peer", value_name = "HOST:PORT")]
    peers: Vec<SocketAddr>,
    /// Do not answer mDNS/DNS-SD queries (sets `discovery.mdns` to false).
    #[arg(long)]
    no_mdns: bool,
    /// Do not use the multicast group (sets `discovery.multicast` to false; mDNS is off then).
    #[arg(long)]
    no_multicast: bool,
    /// Time between beacons in milliseconds (overrides `discovery.beacon_interval_ms`; the
    /// peer timeout becomes at least three intervals and a bit).
    #[arg(long)]
    beacon_interval_ms: Option<u64>,
    /// Log filter, e.g. `debug` or `tuttid=trace` (default: $RUST_LOG, else `info`).
    #[arg(long)]
    log: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = args.log.clone().or_else(|| std::env::var("RUST_LOG").ok()).unwrap_or_else(|| "info".to_string());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("tuttid: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let root = match args.state_dir {
        Some(dir) => dir,
        None => default_state_dir()?,
    };
    let state = StateDir::new(root);
    state.create()?;
    let mut config = Config::load_or_create(&state.file(CONFIG_FILE))?;
    if let Some(name) = args.name {
        config.name = Some(name);
    }
    if let Some(bind) = args.bind {
        config.session.bind = bind;
        config.discovery.bind = bind;
    }
    if let Some(port) = args.session_port {
        config.session.port = port;
    }
    if let Some(port) = args.discovery_port {
        config.discovery.port = port;
    }
    config.discovery.peers.extend(args.peers);
    if args.no_mdns {
        config.discovery.mdns = false;
    }
    if args.no_multicast {
        config.discovery.multicast = false;
    }
    if let Some(ms) = args.beacon_interval_ms {
        config.discovery.beacon_interval_ms = ms;
        config.discovery.peer_timeout_ms = config.discovery.peer_timeout_ms.max(ms.saturating_mul(3) + ms / 5 + 1);
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(tuttid::daemon::run(state, config))?;
    Ok(())
}
