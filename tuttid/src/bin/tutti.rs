//! `tutti`: the command line of the Tutti soft bus (see `docs/softbus/cli.md`).
//!
//! Every command is one request to the local `tuttid` over its Unix socket; `--json` prints
//! the daemon's result as JSON instead of text. Exit status: 0 success, 1 the daemon reported
//! a failure, 2 bad usage, 3 the daemon cannot be reached.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::Value;
use tuttid::api::{ApiError, ErrorKind, Request};
use tuttid::client::{self, ClientError};
use tuttid::state::{default_state_dir, StateDir};

/// Use the devices of the Tutti soft bus from the command line.
#[derive(Debug, Parser)]
#[command(name = "tutti", version, about)]
struct Args {
    /// State directory of the local tuttid (default: $XDG_STATE_HOME/tutti or
    /// ~/.local/state/tutti); its `tuttid.sock` is used.
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    /// The API socket, if not the one in the state directory.
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// This device: id, name, ports, services.
    Status,
    /// The devices discovered on the network.
    Devices,
    /// Pair with a device: run `tutti pair --show` there, then `tutti pair <device>` here.
    Pair {
        /// The device to pair with: id, unique id prefix, or name.
        #[arg(required_unless_present = "show", conflicts_with = "show")]
        device: Option<String>,
        /// The code shown on the other device (asked on the terminal if absent).
        #[arg(long)]
        code: Option<String>,
        /// Show a pairing code on this device for another device to type.
        #[arg(long)]
        show: bool,
    },
    /// The trust store.
    Trust {
        #[command(subcommand)]
        command: TrustCommand,
    },
    /// Call a service method on a trusted device.
    Call {
        /// The device: id, unique id prefix, or name.
        device: String,
        /// `service.method`, e.g. `compute.sha256` or `echo.echo`.
        method: String,
        /// The argument as JSON, e.g. '"hello"' or '{"a":1}' (default: null).
        payload: Option<String>,
        /// Deadline in milliseconds (default: the daemon's, 10 s).
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum TrustCommand {
    /// List the trusted devices.
    List,
    /// Stop trusting a device and close its sessions.
    Revoke {
        /// The device: id, unique id prefix, or name.
        device: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let socket = match (&args.socket, &args.state_dir) {
        (Some(socket), _) => socket.clone(),
        (None, Some(dir)) => StateDir::new(dir).socket(),
        (None, None) => match default_state_dir() {
            Ok(dir) => StateDir::new(dir).socket(),
            Err(e) => return fail(args.json, &ApiError::new(ErrorKind::BadRequest, e.to_string()), 2),
        },
    };
    let (request, timeout) = match build_request(&args.command) {
        Ok(r) => r,
        Err(e) => return fail(args.json, &e, 2),
    };
    match client::request(&socket, &request, timeout) {
        Ok(result) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&result).unwrap_or_default());
            } else {
                print_human(&args.command, &result);
            }
            ExitCode::SUCCESS
        }
        Err(ClientError::Api(e)) => fail(args.json, &e, 1),
        Err(e @ ClientError::NotRunning(..)) => {
            fail(args.json, &ApiError::new(ErrorKind::Unreachable, e.to_string()), 3)
        }
        Err(e) => fail(args.json, &ApiError::new(ErrorKind::Internal, e.to_string()), 3),
    }
}

fn fail(json: bool, e: &ApiError, code: u8) -> ExitCode {
    if json {
        println!("{}", serde_json::json!({ "error": e }));
    }
    eprintln!("tutti: {}", e.message);
    ExitCode::from(code)
}

/// The request of a command, and how long to wait for its answer.
fn build_request(command: &Command) -> Result<(Request, Duration), ApiError> {
    let short = Duration::from_secs(10);
    Ok(match command {
        Command::Status => (Request::Status, short),
        Command::Devices => (Request::Devices, short),
        Command::Pair { show: true, .. } => (Request::PairShow, short),
        Command::Pair { device, code, .. } => {
            let device =
                device.clone().ok_or_else(|| ApiError::new(ErrorKind::BadRequest, "name the device to pair with"))?;
            let code = match code {
                Some(code) => code.clone(),
                None => ask_code(&device)?,
            };
            (Request::Pair { device, code }, Duration::from_secs(30))
        }
        Command::Trust { command: TrustCommand::List } => (Request::TrustList, short),
        Command::Trust { command: TrustCommand::Revoke { device } } => {
            (Request::TrustRevoke { device: device.clone() }, short)
        }
        Command::Call { device, method, payload, timeout_ms } => {
            let payload = match payload {
                None => Value::Null,
                Some(text) => serde_json::from_str(text).map_err(|e| {
                    ApiError::new(
                        ErrorKind::BadRequest,
                        format!("the argument is not JSON ({e}); quote text as JSON, e.g. '\"hello\"'"),
                    )
                })?,
            };
            let wait = Duration::from_millis(timeout_ms.unwrap_or(10_000)) + Duration::from_secs(10);
            (Request::Call { device: device.clone(), method: method.clone(), payload, timeout_ms: *timeout_ms }, wait)
        }
    })
}

fn ask_code(device: &str) -> Result<String, ApiError> {
    eprint!("Code shown on {device}: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("cannot read the code: {e}")))?;
    Ok(line.trim().to_string())
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

fn print_human(command: &Command, result: &Value) {
    match command {
        Command::Status => {
            println!("device   {}", text(result, "device"));
            println!("name     {}", text(result, "name"));
            println!("session  tcp port {}", text(result, "session_port"));
            println!("discover udp port {}", text(result, "discovery_port"));
            println!("state    {}", text(result, "state_dir"));
        }
        Command::Devices => {
            let devices = result.get("devices").and_then(Value::as_array).cloned().unwrap_or_default();
            if devices.is_empty() {
                println!("no devices discovered yet");
                return;
            }
            println!("{:<40} {:<20} {:<8} {:<22} {:<8} LAST SEEN", "DEVICE", "NAME", "KIND", "ADDRESS", "TRUSTED");
            for d in devices {
                let trusted = if d.get("trusted") == Some(&Value::Bool(true)) { "yes" } else { "no" };
                println!(
                    "{:<40} {:<20} {:<8} {:<22} {:<8} {} ms ago",
                    text(&d, "id"),
                    text(&d, "name"),
                    text(&d, "kind"),
                    text(&d, "address"),
                    trusted,
                    text(&d, "last_seen_ms")
                );
            }
        }
        Command::Pair { show: true, .. } => {
            println!("Pairing code: {}", text(result, "code"));
            println!(
                "Valid for {} s, {} attempts. On the other device run:",
                text(result, "expires_in_s"),
                text(result, "attempts")
            );
            println!("  tutti pair {} --code {}", text(result, "device"), text(result, "code"));
        }
        Command::Pair { .. } => println!("Paired with {} ({})", text(result, "name"), text(result, "device")),
        Command::Trust { command: TrustCommand::List } => {
            let list = result.get("trusted").and_then(Value::as_array).cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no trusted devices");
                return;
            }
            println!("{:<40} {:<20} PAIRED AT (unix s)", "DEVICE", "NAME");
            for d in list {
                println!("{:<40} {:<20} {}", text(&d, "id"), text(&d, "name"), text(&d, "paired_at"));
            }
        }
        Command::Trust { command: TrustCommand::Revoke { .. } } => {
            println!("Revoked {} ({})", text(result, "name"), text(result, "device"));
        }
        Command::Call { .. } => {
            let response = result.get("response").cloned().unwrap_or(Value::Null);
            println!("{}", serde_json::to_string_pretty(&response).unwrap_or_default());
        }
    }
}
