//! Three real `tuttid` processes on loopback, driven through the real `tutti` binary:
//! discovery, pairing (wrong code, then right code), an encrypted `compute.sha256` call
//! between the paired two, capabilities and the permission policy (deny, ask with nobody
//! answering, ask answered by `tutti prompt`), pub/sub, `tutti serve` (display, storage with
//! path-traversal protection), file transfer and its resumption, refusal of the unpaired
//! third, and revocation.
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

/// A helper process, killed when dropped.
struct Child2(Option<Child>);

impl Child2 {
    /// Waits at most `limit` for the process to end by itself and returns its standard output.
    fn wait_output(mut self, limit: Duration) -> String {
        let mut child = self.0.take().expect("a child");
        let deadline = Instant::now() + limit;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
    }
}

impl Drop for Child2 {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
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
    let b = start_with_config(&root, "beta", ports[1], &peers_of(1), Some(r#"{"policy": {"ask_timeout_ms": 1500}}"#));
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

    // Capabilities and permissions: beta describes itself, and its policy decides.
    let caps = a.ok(&["caps", "beta"]);
    let names: Vec<&str> =
        caps["capabilities"].as_array().unwrap().iter().map(|c| c["capability"].as_str().unwrap()).collect();
    assert_eq!(names, ["compute", "echo"]);
    assert_eq!(caps["capabilities"][0]["attributes"]["algorithms"], "sha256");
    b.ok(&["policy", "set", "alpha", "compute", "deny"]);
    let (status, err) = a.fails(&["call", b_id, "compute.sha256", "\"hello\""]);
    assert_eq!((status, err["kind"].as_str()), (1, Some("permission_denied")), "{err}");
    a.ok(&["call", b_id, "echo.echo", "1"]);
    b.ok(&["policy", "set", "alpha", "compute", "ask"]);
    let (_, err) = a.fails(&["call", b_id, "compute.sha256", "\"hello\""]);
    assert_eq!(err["kind"], "permission_denied", "nobody answers the prompt: {err}");
    let mut prompt = Command::new(TUTTI)
        .arg("--state-dir")
        .arg(&b.state)
        .args(["prompt", "--auto", "allow", "--for", "1m"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run tutti prompt");
    wait_for("the prompt client", Duration::from_secs(5), || (b.ok(&["status"])["prompters"] == 1).then_some(()));
    let answer = a.ok(&["call", b_id, "compute.sha256", "\"hello\""]);
    assert_eq!(answer["response"]["sha256"], HELLO_SHA256);
    let _ = prompt.kill();
    let _ = prompt.wait();
    let policy = b.ok(&["policy", "list"]);
    assert_eq!(policy["default"], "allow");
    let rule = &policy["rules"][0];
    assert_eq!(
        (rule["capability"].as_str(), rule["decision"].as_str(), rule["name"].as_str()),
        (Some("compute"), Some("allow"), Some("alpha")),
        "the answer for a minute became a rule: {policy}"
    );
    assert!(rule["expires_in_s"].as_u64().unwrap() <= 60);

    // Pub/sub: beta subscribes; alpha publishes until beta's subscription has reached it.
    let sub = Command::new(TUTTI)
        .arg("--state-dir")
        .arg(&b.state)
        .args(["--json", "sub", "news", "--count", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run tutti sub");
    let sub = Child2(Some(sub));
    wait_for("beta's subscription to reach alpha", Duration::from_secs(10), || {
        let published = a.ok(&["pub", "news", "hello subscribers"]);
        (published["delivered_to"].as_array().unwrap().len() == 1).then_some(())
    });
    let out = sub.wait_output(Duration::from_secs(5));
    let message: Value = serde_json::from_str(out.lines().next().unwrap_or("{}")).unwrap();
    assert_eq!(message["payload"], "hello subscribers", "{out}");
    assert_eq!(message["from"].as_str(), Some(a_id.as_str()));

    // `tutti serve` on beta: display on its terminal, a storage directory, received files.
    let shared_dir = root.join("beta-shared");
    std::fs::create_dir_all(&shared_dir).unwrap();
    let shown = root.join("beta-display.txt");
    let serve = Command::new(TUTTI)
        .arg("--state-dir")
        .arg(&b.state)
        .args(["serve", "--storage"])
        .arg(&shared_dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&shown).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("run tutti serve");
    let serve = Child2(Some(serve));
    let caps = wait_for("beta to offer display and storage", Duration::from_secs(5), || {
        let caps = a.ok(&["caps", "beta"]);
        (caps["capabilities"].as_array().unwrap().len() == 4).then_some(caps)
    });
    assert_eq!(caps["capabilities"][2]["capability"], "display");
    assert_eq!(caps["capabilities"][3]["capability"], "storage");
    assert_eq!(a.ok(&["call", "beta", "display.show", "\"hi there\""])["response"]["shown"], true);
    assert!(std::fs::read_to_string(&shown).unwrap().contains("[alpha] hi there"));
    a.ok(&["call", "beta", "storage.put", r#"{"path":"note.txt","content":"abc"}"#]);
    assert_eq!(a.ok(&["call", "beta", "storage.get", r#"{"path":"note.txt"}"#])["response"]["content"], "abc");
    assert_eq!(std::fs::read_to_string(shared_dir.join("note.txt")).unwrap(), "abc");
    let (_, err) = a.fails(&["call", "beta", "storage.get", r#"{"path":"../beta/identity.key"}"#]);
    assert!(err["message"].as_str().unwrap().contains("plain names"), "path traversal is refused: {err}");
    let transformed = a.ok(&["call", "beta", "compute.transform", r#"{"op":"upper","text":"tutti"}"#]);
    assert_eq!(transformed["response"]["text"], "TUTTI");

    // File transfer into the shared directory, then a resumed one.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let file = root.join("photo.bin");
    std::fs::write(&file, &data).unwrap();
    let sent = a.ok(&["send", "beta", file.to_str().unwrap()]);
    assert_eq!(sent["bytes"], 3_000_000);
    assert_eq!(sent["resumed_from"], 0);
    assert_eq!(std::fs::read(shared_dir.join("photo.bin")).unwrap(), data);
    let other: Vec<u8> = data.iter().map(|b| b ^ 0x5a).collect();
    let file = root.join("clip.bin");
    std::fs::write(&file, &other).unwrap();
    let sha = sha256_hex(&other);
    // What a broken transfer leaves behind: the first megabyte in the partial file.
    std::fs::write(shared_dir.join(format!(".tutti-partial-{sha}")), &other[..1_000_000]).unwrap();
    let sent = a.ok(&["send", "beta", file.to_str().unwrap()]);
    assert_eq!(sent["resumed_from"], 1_000_000, "{sent}");
    assert_eq!(sent["sha256"].as_str(), Some(sha.as_str()));
    assert_eq!(std::fs::read(shared_dir.join("clip.bin")).unwrap(), other);
    drop(serve);

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
fn a_frozen_or_restarted_peer_is_detected_and_its_session_comes_back() {
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

    // The peer is back: the session comes back by itself, without a call.
    wait_for("the session to be opened again", Duration::from_secs(15), || connected(&a).then_some(()));
    let log = std::fs::read_to_string(&a.log).unwrap_or_default();
    assert!(log.contains("session opened again"), "{log}");

    // The peer restarts (a new process, a new session port, the same identity): again.
    drop(b);
    wait_for("the killed peer's session to be lost", Duration::from_secs(10), || (!connected(&a)).then_some(()));
    let b = start_with_config(&root, "beta", ports[1], &[ports[0]], Some(config));
    wait_for("the session to the restarted peer", Duration::from_secs(20), || connected(&a).then_some(()));
    a.ok(&["call", &b_id, "echo.echo", "2"]);

    drop((a, b));
    let _ = std::fs::remove_dir_all(&root);
}
