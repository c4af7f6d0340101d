//! What the soft bus system tests share (docs/softbus/tutti.md): the host's `tuttid` and
//! `tutti` from this repository, run inside a test's network namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::net::Namespace;
use harness::Running;

/// SHA-256 of `hello`, what `compute.sha256` answers for `"hello"`.
pub const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

/// `tuttid` and `tutti`, built (debug) from this repository.
pub fn binaries() -> (PathBuf, PathBuf) {
    let root = crate::linux::repo();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "-q", "-p", "tuttid", "--bins"])
        .current_dir(&root)
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "building tuttid: {}", String::from_utf8_lossy(&out.stderr));
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    (target.join("debug/tuttid"), target.join("debug/tutti"))
}

/// A running `tutti serve`, killed when dropped.
pub struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `tuttid` in a namespace with a fresh state directory, killed when dropped.
pub struct Daemon {
    child: Child,
    state: PathBuf,
    tutti: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts `tuttid` named `name` in `ns` with its sessions on TCP `port` (0: any free port;
    /// two daemons in one namespace need different ports) and beacons every second.
    pub fn start(ns: &Namespace, name: &str, port: u16, state: &Path, (tuttid, tutti): &(PathBuf, PathBuf)) -> Daemon {
        let _ = std::fs::remove_dir_all(state);
        std::fs::create_dir_all(state).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(tuttid)
            .arg("--state-dir")
            .arg(state)
            .args(["--name", name, "--beacon-interval-ms", "1000", "--session-port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(state.join("log")).unwrap())
            .stderr(std::fs::File::create(state.join("stderr")).unwrap())
            .spawn()
            .expect("tuttid starts");
        let daemon = Daemon { child, state: state.to_path_buf(), tutti: tutti.clone() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !daemon.state.join("tuttid.sock").exists() {
            assert!(Instant::now() < deadline, "tuttid did not start: {}", daemon.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    /// `tutti serve --no-display --storage <dir>` against it: the daemon shares `dir` while the
    /// returned process runs (killed when dropped).
    pub fn serve_storage(&self, dir: &Path) -> Serving {
        let err = self.state.join("serve.stderr");
        let child = Command::new(&self.tutti)
            .arg("--state-dir")
            .arg(&self.state)
            .args(["serve", "--no-display", "--storage"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("tutti serve starts");
        let serving = Serving(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&err).unwrap_or_default().contains("tutti: serving") {
            assert!(Instant::now() < deadline, "tutti serve did not start: {}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
        serving
    }

    /// Its log and standard error.
    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.state.join(name)).unwrap_or_default();
        format!("{}{}", read("log"), read("stderr"))
    }

    /// Runs `tutti --json <args>` against it.
    pub fn tutti(&self, args: &[&str]) -> Output {
        Command::new(&self.tutti)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--json")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("tutti runs")
    }

    /// Runs `tutti --json <args>`, failing the test (with the daemon's log) if it fails; its
    /// standard output.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.tutti(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "tutti {args:?} failed: {stdout}\n{}\ntuttid:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        stdout
    }

    /// `tutti --json devices`, without spaces.
    pub fn devices(&self) -> String {
        String::from_utf8_lossy(&self.tutti(&["devices"]).stdout).replace(' ', "")
    }

    /// Waits up to a minute until `tutti devices` lists a device named `name`; `guest` is
    /// reported if not.
    #[track_caller]
    pub fn wait_device(&self, name: &str, guest: &mut Running) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let needle = format!("\"name\":\"{name}\"");
        while !self.devices().contains(&needle) {
            if Instant::now() > deadline {
                panic!("{}", guest.report(&format!("the host never discovered {name}; tuttid:\n{}", self.logs())));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Waits up to a minute for a console line containing `needle`; its text.
#[track_caller]
pub fn wait(guest: &mut Running, needle: &str) -> String {
    match guest.wait_for(needle, Duration::from_secs(60)) {
        Some(line) => line.text,
        None => panic!("{}", guest.report(&format!("the console never showed {needle:?}"))),
    }
}

/// Types `bus pair --show` on the guest (once per guest: the first code on its console is
/// read) and returns the 6-digit code shown.
#[track_caller]
pub fn show_code(guest: &mut Running) -> String {
    let line = type_and_wait(guest, "bus pair --show", "pairing code ");
    let code: String = line.split("pairing code ").nth(1).unwrap_or_default().chars().take(6).collect();
    assert!(code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()), "no code in {line:?}");
    code
}

/// Types `command` (and a newline) on the guest's console and waits for `needle`.
#[track_caller]
pub fn type_and_wait(guest: &mut Running, command: &str, needle: &str) -> String {
    assert!(guest.type_text(&format!("{command}\n")), "typing into the guest");
    wait(guest, needle)
}
