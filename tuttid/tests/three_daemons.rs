//! Three real `tuttid` processes on loopback, driven through the real `tutti` binary:
//! discovery, pairing (wrong code, then right code), an encrypted `compute.sha256` call
//! between the paired two, refusal of the unpaired third, and revocation.
//!
//! Discovery runs over unicast UDP to each other's ports (`--no-multicast --peer`), so the
//! test does not depend on multicast routing of the machine. Every wait has a deadline.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const TUTTID: &str = env!("CARGO_BIN_EXE_tuttid");
const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");
const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

/// A running daemon, killed when dropped.
struct Daemon {
    child: Child,
    state: PathBuf,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Runs `tutti --json <args>` against this daemon.
    fn tutti(&self, args: &[&str]) -> Output {
        Command::new(TUTTI)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--json")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tutti")
    }

    /// Runs `tutti` and returns its JSON result, failing the test if the command failed.
    fn ok(&self, args: &[&str]) -> Value {
        let out = self.tutti(args);
        assert!(
            out.status.success(),
            "tutti {args:?} failed: {}\n{}\nlog:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        serde_json::from_slice(&out.stdout).expect("tutti --json prints JSON")
    }

    /// Runs `tutti`, expects it to fail, and returns (exit code, error JSON).
    fn fails(&self, args: &[&str]) -> (i32, Value) {
        let out = self.tutti(args);
        assert!(!out.status.success(), "tutti {args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
        let v: Value = serde_json::from_slice(&out.stdout).expect("tutti --json prints JSON on failure too");
        (out.status.code().unwrap_or(-1), v["error"].clone())
    }
}

/// Free UDP ports on loopback (bound and released; good enough for a test).
fn free_udp_ports(n: usize) -> Vec<u16> {
    let sockets: Vec<UdpSocket> = (0..n).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    sockets.iter().map(|s| s.local_addr().unwrap().port()).collect()
}

fn start(root: &Path, name: &str, port: u16, peers: &[u16]) -> Daemon {
    start_with_config(root, name, port, peers, None)
}

fn start_with_config(root: &Path, name: &str, port: u16, peers: &[u16], config: Option<&str>) -> Daemon {
    let state = root.join(name);
    if let Some(config) = config {
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("config.json"), config).unwrap();
    }
    let log = root.join(format!("{name}.log"));
    let mut cmd = Command::new(TUTTID);
    cmd.arg("--state-dir")
        .arg(&state)
        .args(["--name", name, "--bind", "127.0.0.1", "--no-multicast", "--session-port", "0"])
        .args(["--discovery-port", &port.to_string(), "--beacon-interval-ms", "200", "--log", "debug"]);
    for p in peers {
        cmd.args(["--peer", &format!("127.0.0.1:{p}")]);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start tuttid");
    Daemon { child, state, log }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn device_ids(devices: &Value) -> Vec<String> {
    devices["devices"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn three_daemons_discover_pair_call_and_refuse() {
    let root = std::env::temp_dir().join(format!("tuttid-it-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let ports = free_udp_ports(3);
    let peers_of =
        |i: usize| -> Vec<u16> { ports.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, p)| *p).collect() };
    let a = start(&root, "alpha", ports[0], &peers_of(0));
    let b = start(&root, "beta", ports[1], &peers_of(1));
    let c = start(&root, "gamma", ports[2], &peers_of(2));

    // Each daemon answers its API, then sees the other two.
    let ids: Vec<String> = [&a, &b, &c]
        .iter()
        .map(|d| {
            wait_for("the API socket", Duration::from_secs(10), || {
                let out = d.tutti(&["status"]);
                out.status.success().then(|| serde_json::from_slice::<Value>(&out.stdout).unwrap())
            })["device"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let (a_id, b_id, c_id) = (&ids[0], &ids[1], &ids[2]);
    for (i, d) in [&a, &b, &c].iter().enumerate() {
        wait_for("discovery of the two others", Duration::from_secs(15), || {
            let seen = device_ids(&d.ok(&["devices"]));
            let want: Vec<&String> = ids.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, id)| id).collect();
            want.iter().all(|id| seen.contains(id)).then_some(())
        });
    }

    // A wrong code fails cleanly on both sides and trusts nothing.
    let shown = b.ok(&["pair", "--show"]);
    let code = shown["code"].as_str().unwrap().to_string();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, err) = a.fails(&["pair", b_id, "--code", wrong]);
    assert_eq!(status, 1);
    assert_eq!(err["kind"], "pairing_failed");
    assert!(err["message"].as_str().unwrap().contains("wrong pairing code"), "{err}");
    assert_eq!(a.ok(&["trust", "list"])["trusted"].as_array().unwrap().len(), 0);

    // The right code (the offer still has attempts left) pairs alpha and beta, by name.
    let paired = a.ok(&["pair", "beta", "--code", &code]);
    assert_eq!(paired["device"].as_str(), Some(b_id.as_str()));
    let trusted_by_a = a.ok(&["trust", "list"]);
    assert_eq!(trusted_by_a["trusted"][0]["id"].as_str(), Some(b_id.as_str()));
    let trusted_by_b = wait_for("beta to trust alpha", Duration::from_secs(5), || {
        let t = b.ok(&["trust", "list"]);
        (t["trusted"].as_array().unwrap().len() == 1).then_some(t)
    });
    assert_eq!(trusted_by_b["trusted"][0]["id"].as_str(), Some(a_id.as_str()));
    assert_eq!(trusted_by_b["trusted"][0]["name"], "alpha");

    // An encrypted call between the paired two, both ways.
    let answer = a.ok(&["call", b_id, "compute.sha256", "\"hello\""]);
    assert_eq!(answer["response"]["sha256"], HELLO_SHA256);
    assert_eq!(answer["response"]["bytes"], 5);
    let echo = b.ok(&["call", "alpha", "echo.echo", r#"{"n":[1,2,3]}"#]);
    assert_eq!(echo["response"], serde_json::json!({"n": [1, 2, 3]}));
    let (_, err) = a.fails(&["call", b_id, "nope.nothing"]);
    assert_eq!(err["kind"], "remote");

    // The unpaired third is refused, whichever side calls.
    let (status, err) = c.fails(&["call", a_id, "compute.sha256", "\"hello\""]);
    assert_eq!(status, 1);
    assert_eq!(err["kind"], "untrusted", "{err}");
    assert!(err["message"].as_str().unwrap().contains("not trusted"), "{err}");
    let (_, err) = a.fails(&["call", c_id, "compute.sha256", "\"hello\""]);
    assert_eq!(err["kind"], "untrusted", "{err}");

    // Revocation: beta stops trusting alpha, and alpha's next call is refused by beta.
    b.ok(&["trust", "revoke", a_id]);
    let (_, err) = wait_for("the revoked session to be refused", Duration::from_secs(5), || {
        let out = a.tutti(&["call", b_id, "compute.sha256", "\"hello\""]);
        (!out.status.success())
            .then(|| (out.status.code(), serde_json::from_slice::<Value>(&out.stdout).unwrap()["error"].clone()))
    });
    assert_eq!(err["kind"], "untrusted", "{err}");

    drop((a, b, c));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_command_line_reports_a_missing_daemon() {
    let dir = std::env::temp_dir().join(format!("tuttid-none-{}", std::process::id()));
    let out = Command::new(TUTTI).arg("--state-dir").arg(&dir).args(["--json", "devices"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "unreachable");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the daemon running?"));
}

/// Keepalive and failure detection end to end: a session between two daemons survives idle
/// time through keepalives, and is declared lost once the peer process is frozen.
#[test]
fn a_frozen_peer_is_detected_and_its_session_dropped() {
    let root = std::env::temp_dir().join(format!("tuttid-freeze-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let config = r#"{"session": {"keepalive_interval_ms": 200, "idle_timeout_ms": 1200}}"#;
    let ports = free_udp_ports(2);
    let a = start_with_config(&root, "alpha", ports[0], &[ports[1]], Some(config));
    let b = start_with_config(&root, "beta", ports[1], &[ports[0]], Some(config));
    let b_id = wait_for("beta to be discovered", Duration::from_secs(15), || {
        a.tutti(&["devices"]).status.success().then_some(())?;
        device_ids(&a.ok(&["devices"])).into_iter().next()
    });
    let code = b.ok(&["pair", "--show"])["code"].as_str().unwrap().to_string();
    a.ok(&["pair", &b_id, "--code", &code]);
    a.ok(&["call", &b_id, "echo.echo", "1"]);
    let connected = |d: &Daemon| d.ok(&["devices"])["devices"][0]["connected"] == Value::Bool(true);
    assert!(connected(&a));
    // Two idle timeouts of silence from the application: keepalives keep the session.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(connected(&a), "an idle session with a live peer stays up");

    let pid = b.child.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let lost = std::panic::catch_unwind(|| {
        wait_for("the frozen peer's session to be lost", Duration::from_secs(10), || {
            let devices = a.ok(&["devices"]);
            let list = devices["devices"].as_array().cloned().unwrap_or_default();
            list.iter().all(|d| d["connected"] == Value::Bool(false)).then_some(())
        })
    });
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    assert!(lost.is_ok(), "log:\n{}", std::fs::read_to_string(&a.log).unwrap_or_default());
    let log = std::fs::read_to_string(&a.log).unwrap_or_default();
    assert!(log.contains("the peer was silent"), "the log says why the session ended:\n{log}");

    drop((a, b));
    let _ = std::fs::remove_dir_all(&root);
}
