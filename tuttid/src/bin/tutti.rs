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
use tuttid::api::{ApiError, ErrorKind, Request, ServeError};
use tuttid::client::{self, ClientError, Step};
use tuttid::state::{default_state_dir, StateDir};
use tuttid::storage::Storage;

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
    /// The capabilities a trusted device offers.
    Caps {
        /// The device: id, unique id prefix, or name.
        device: String,
    },
    /// What trusted devices may use on this device.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Answer this daemon's permission prompts (policy `ask`) on the terminal.
    Prompt {
        /// Answer every prompt with this instead of asking: allow or deny.
        #[arg(long, value_parser = ["allow", "deny"])]
        auto: Option<String>,
        /// Remember each answer this long (e.g. 30s, 10m, 2h, 1d); this call only if absent.
        #[arg(long = "for", value_parser = parse_duration)]
        for_s: Option<u64>,
    },
    /// Publish a message on a topic to the devices that subscribed to it.
    Pub {
        /// The topic.
        topic: String,
        /// The message (text).
        message: String,
    },
    /// Print the messages published on a topic by trusted devices, until interrupted.
    Sub {
        /// The topic.
        topic: String,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Run a program on a trusted device (a Tutti device's Linux programs, `compute.run`),
    /// printing its output as it comes; the exit status is the program's.
    Run {
        /// The device: id, unique id prefix, or name.
        device: String,
        /// The program's absolute path on that device, e.g. /disk/busybox.
        program: String,
        /// Its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Send a file to a trusted device (resumes a broken transfer; progress on stderr).
    Send {
        /// The device: id, unique id prefix, or name.
        device: String,
        /// The file.
        file: PathBuf,
    },
    /// Provide display (text on this terminal) and storage (a directory) to trusted devices.
    Serve {
        /// Do not serve display.show.
        #[arg(long)]
        no_display: bool,
        /// Share this directory through storage.get/put/list; received files go there too.
        #[arg(long)]
        storage: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Allow, deny or ask before a device uses a capability of this device.
    Set {
        /// The device: id, unique id prefix, or name.
        device: String,
        /// display, storage, compute, camera, speaker, sensor, or a custom name (e.g. echo).
        capability: String,
        /// allow, deny or ask.
        #[arg(value_parser = ["allow", "deny", "ask"])]
        decision: String,
        /// For this long only (e.g. 30s, 10m, 2h, 1d); until changed if absent.
        #[arg(long = "for", value_parser = parse_duration)]
        for_s: Option<u64>,
    },
    /// The rules, and the default for everything else.
    List,
}

/// Seconds in `10m`, `30s`, `2h`, `1d` or a plain number of seconds.
fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is not a duration like 30s, 10m, 2h or 1d"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("{text:?} is too long"))
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
    match &args.command {
        Command::Prompt { auto, for_s } => return prompt(&socket, auto.as_deref(), *for_s),
        Command::Sub { topic, count } => return subscribe(&socket, args.json, topic, *count),
        Command::Send { device, file } => return send(&socket, args.json, device, file),
        Command::Run { device, program, args: argv } => return run(&socket, args.json, device, program, argv),
        Command::Serve { no_display, storage } => return serve(&socket, !no_display, storage.as_deref()),
        _ => {}
    }
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

/// Ends a streaming command: exit status by the kind of failure.
fn stream_result(json: bool, result: Result<(), ClientError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(ClientError::Api(e)) => fail(json, &e, 1),
        Err(e) => fail(json, &ApiError::new(ErrorKind::Unreachable, e.to_string()), 3),
    }
}

/// `tutti run`: `compute.run`, then `compute.output` until the program ended (asked again
/// every 100 ms while nothing comes); its output on stdout as it comes (with `--json`, each
/// answer as a line).
fn run(socket: &std::path::Path, json: bool, device: &str, program: &str, args: &[String]) -> ExitCode {
    let call = |method: &str, payload: Value| {
        let request = Request::Call { device: device.to_string(), method: method.into(), payload, timeout_ms: None };
        client::request(socket, &request, Duration::from_secs(20)).map(|v| v["response"].clone())
    };
    let failed = |e: ClientError| match e {
        ClientError::Api(e) => fail(json, &e, 1),
        e => fail(json, &ApiError::new(ErrorKind::Unreachable, e.to_string()), 3),
    };
    let started = match call("compute.run", serde_json::json!({ "program": program, "args": args })) {
        Ok(v) => v,
        Err(e) => return failed(e),
    };
    let Some(run) = started["run"].as_u64() else {
        return fail(json, &ApiError::new(ErrorKind::Internal, format!("compute.run answered {started}")), 3);
    };
    loop {
        let answer = match call("compute.output", serde_json::json!({ "run": run })) {
            Ok(v) => v,
            Err(e) => return failed(e),
        };
        let output = answer["output"].as_str().unwrap_or_default();
        if json {
            println!("{answer}");
        } else {
            print!("{output}");
            let _ = std::io::Write::flush(&mut std::io::stdout());
        }
        if answer["done"].as_bool() == Some(true) {
            return match (answer["exit"].as_i64(), answer["signal"].as_u64()) {
                (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                (None, Some(signal)) => {
                    eprintln!("tutti: {program} on {device} was killed by signal {signal}");
                    ExitCode::from(u8::try_from(128 + signal).unwrap_or(255))
                }
                (None, None) => ExitCode::SUCCESS,
            };
        }
        if output.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `tutti sub`: prints messages as they come (one JSON object per line with `--json`).
fn subscribe(socket: &std::path::Path, json: bool, topic: &str, count: Option<u64>) -> ExitCode {
    let mut seen = 0u64;
    let mut failure = None;
    let result = client::stream(socket, &Request::Sub { topic: topic.to_string() }, |line| {
        if let Some(response) = client::response_of(&line) {
            return match response {
                Ok(_) => {
                    eprintln!("tutti: subscribed to {topic:?}");
                    Step::Continue
                }
                Err(e) => {
                    failure = Some(e);
                    Step::Stop
                }
            };
        }
        let Some(m) = line.get("message") else { return Step::Continue };
        if json {
            println!("{m}");
        } else {
            println!("[{}] {}: {}", text(m, "topic"), text(m, "from"), text(m, "payload"));
        }
        let _ = std::io::Write::flush(&mut std::io::stdout());
        seen += 1;
        if count.is_some_and(|c| seen >= c) {
            Step::Stop
        } else {
            Step::Continue
        }
    });
    stream_result(json, failure.map_or(result, |e| Err(ClientError::Api(e))))
}

/// `tutti send`: progress on stderr, the result on stdout.
fn send(socket: &std::path::Path, json: bool, device: &str, file: &std::path::Path) -> ExitCode {
    let path = match std::path::absolute(file) {
        Ok(p) => p,
        Err(e) => return fail(json, &ApiError::new(ErrorKind::BadRequest, format!("{}: {e}", file.display())), 2),
    };
    let request = Request::Send { device: device.to_string(), path: path.display().to_string() };
    let mut outcome = None;
    let result = client::stream(socket, &request, |line| {
        if let Some(response) = client::response_of(&line) {
            outcome = Some(response);
            return Step::Stop;
        }
        if let Some(p) = line.get("progress") {
            let sent = p.get("sent").and_then(Value::as_u64).unwrap_or(0);
            let size = p.get("size").and_then(Value::as_u64).unwrap_or(0).max(1);
            eprint!("\rtutti: sent {sent} of {size} bytes ({}%)   ", sent.saturating_mul(100) / size);
        }
        Step::Continue
    });
    eprintln!();
    match (result, outcome) {
        (Ok(()), Some(Ok(v))) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                let resumed = v.get("resumed_from").and_then(Value::as_u64).unwrap_or(0);
                let note = if resumed > 0 { format!(", resumed at byte {resumed}") } else { String::new() };
                println!(
                    "Sent {} ({} bytes, sha256 {}){note}",
                    text(&v, "name"),
                    text(&v, "bytes"),
                    text(&v, "sha256")
                );
            }
            ExitCode::SUCCESS
        }
        (Ok(()), Some(Err(e))) => fail(json, &e, 1),
        (Ok(()), None) => fail(json, &ApiError::new(ErrorKind::Unreachable, "the daemon closed the connection"), 3),
        (Err(e), _) => stream_result(json, Err(e)),
    }
}

/// `tutti serve`: shows `display.show` text here and serves a storage directory.
fn serve(socket: &std::path::Path, display: bool, storage: Option<&std::path::Path>) -> ExitCode {
    let shared = match storage.map(Storage::new).transpose() {
        Ok(s) => s,
        Err(e) => return fail(false, &ApiError::new(ErrorKind::BadRequest, e.to_string()), 2),
    };
    let request = Request::Serve { display, storage: shared.as_ref().map(|s| s.root().display().to_string()) };
    let mut failure = None;
    let result = client::stream(socket, &request, |line| {
        if let Some(response) = client::response_of(&line) {
            match response {
                Ok(v) if v.get("serving").is_some() => eprintln!("tutti: serving {}", v["serving"]),
                Ok(_) => {}
                Err(e) if failure.is_none() && e.kind == ErrorKind::BadRequest => {
                    failure = Some(e);
                    return Step::Stop;
                }
                Err(e) => eprintln!("tutti: {e}"),
            }
            return Step::Continue;
        }
        let Some(r) = line.get("request") else { return Step::Continue };
        let id = r.get("id").and_then(Value::as_u64).unwrap_or(0);
        let method = text(r, "method");
        let payload = r.get("payload").cloned().unwrap_or(Value::Null);
        let answer = serve_one(display, shared.as_ref(), &method, &payload, r);
        let (result, error) = match answer {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        Step::Reply(Request::ServeReply { id, result, error })
    });
    stream_result(false, failure.map_or(result, |e| Err(ClientError::Api(e))))
}

/// Serves one forwarded request.
fn serve_one(
    display: bool,
    storage: Option<&Storage>,
    method: &str,
    payload: &Value,
    request: &Value,
) -> Result<Value, ServeError> {
    let err = |code: u16, message: String| ServeError { code, message };
    match method {
        "display.show" if display => {
            let safe = tuttid::services::display_text(payload);
            println!("[{}] {safe}", text(request, "name"));
            let _ = std::io::Write::flush(&mut std::io::stdout());
            Ok(serde_json::json!({ "shown": true, "chars": safe.chars().count() }))
        }
        m if m.starts_with("storage.") => {
            let storage = storage.ok_or_else(|| err(6, "this device shares no storage directory".into()))?;
            let bytes = serde_json::to_vec(payload).unwrap_or_default();
            storage.serve(m, &bytes).map_err(|e| err(e.code().0, e.to_string()))
        }
        other => Err(err(1, format!("no method {other:?} here"))),
    }
}

/// `tutti prompt`: answers prompts until the daemon goes away.
fn prompt(socket: &std::path::Path, auto: Option<&str>, for_s: Option<u64>) -> ExitCode {
    eprintln!("tutti: answering permission prompts of {} (Ctrl-C to stop)", socket.display());
    let decide = |p: &Value| -> (bool, Option<u64>) {
        let who = format!("{} ({})", text(p, "name"), text(p, "device"));
        let what = format!("{} through {}", text(p, "capability"), text(p, "method"));
        if let Some(auto) = auto {
            let allow = auto == "allow";
            eprintln!("tutti: {} {who} to use {what}", if allow { "allowed" } else { "denied" });
            return (allow, for_s);
        }
        eprint!("Allow {who} to use {what}? [y/N] ");
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        (matches!(line.trim(), "y" | "Y" | "yes"), for_s)
    };
    match client::watch_prompts(socket, decide) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tutti: {e}");
            ExitCode::from(3)
        }
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
        Command::Caps { device } => (Request::Caps { device: device.clone() }, Duration::from_secs(20)),
        Command::Policy { command: PolicyCommand::Set { device, capability, decision, for_s } } => (
            Request::PolicySet {
                device: device.clone(),
                capability: capability.clone(),
                decision: decision.clone(),
                for_s: *for_s,
            },
            short,
        ),
        Command::Policy { command: PolicyCommand::List } => (Request::PolicyList, short),
        Command::Pub { topic, message } => {
            (Request::Pub { topic: topic.clone(), message: message.clone() }, Duration::from_secs(30))
        }
        Command::Prompt { .. }
        | Command::Sub { .. }
        | Command::Send { .. }
        | Command::Run { .. }
        | Command::Serve { .. } => {
            return Err(ApiError::new(ErrorKind::Internal, "this command is not a single request"));
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
        Command::Caps { .. } => {
            println!("{:<12} ATTRIBUTES", "CAPABILITY");
            for c in result.get("capabilities").and_then(Value::as_array).cloned().unwrap_or_default() {
                let attrs = c.get("attributes").and_then(Value::as_object).cloned().unwrap_or_default();
                let attrs: Vec<String> =
                    attrs.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
                println!("{:<12} {}", text(&c, "capability"), attrs.join(" "));
            }
        }
        Command::Policy { command: PolicyCommand::Set { .. } } => {
            let until = match result.get("until").and_then(Value::as_u64) {
                Some(u) => format!(" until {u} (unix s)"),
                None => String::new(),
            };
            println!(
                "{} may {} {}{until}",
                text(result, "device"),
                match text(result, "decision").as_str() {
                    "allow" => "use",
                    "deny" => "not use",
                    _ => "ask to use",
                },
                text(result, "capability")
            );
        }
        Command::Policy { command: PolicyCommand::List } => {
            println!("default: {}", text(result, "default"));
            let rules = result.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
            if rules.is_empty() {
                println!("no rules");
                return;
            }
            println!("{:<40} {:<16} {:<12} {:<6} EXPIRES IN", "DEVICE", "NAME", "CAPABILITY", "RULE");
            for r in rules {
                let expires = r.get("expires_in_s").and_then(Value::as_u64).map_or("-".into(), |s| format!("{s} s"));
                println!(
                    "{:<40} {:<16} {:<12} {:<6} {expires}",
                    text(&r, "device"),
                    text(&r, "name"),
                    text(&r, "capability"),
                    text(&r, "decision")
                );
            }
        }
        Command::Pub { topic, .. } => {
            let n = result.get("delivered_to").and_then(Value::as_array).map_or(0, Vec::len);
            println!("Published on {topic:?} to {n} device(s)");
        }
        Command::Prompt { .. }
        | Command::Sub { .. }
        | Command::Send { .. }
        | Command::Run { .. }
        | Command::Serve { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("30"), Ok(30));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("1d"), Ok(86_400));
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
