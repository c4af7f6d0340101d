//! `cargo xtask bench softbus`: the soft bus between two `tuttid` daemons on loopback, beside
//! plain TCP without encryption measured in the same run.
//!
//! The daemons are the release builds of `tuttid`, started with their own state directories,
//! unicast discovery to each other on 127.0.0.1, and paired through the local API, as a user
//! would with `tutti`. Figures:
//!
//! - RPC round trip (`echo.echo`, 32-byte payload), p50 and p99: the `elapsed_us` the
//!   calling daemon measures around the call (session task, encryption, TCP, the other
//!   daemon, and back), so the local API between the benchmark and the daemon is not
//!   counted; the API round trip is reported too. Baseline: a 32-byte echo over one TCP
//!   connection.
//! - Messages per second: calls from 8 concurrent API clients for 2 s (each call is a
//!   request and a response). Baseline: 8 concurrent TCP echo connections.
//! - Stream throughput: `send` of a 64 MiB file (read, SHA-256, encrypted stream with flow
//!   control, written and hashed again on the other side), until the receiver confirmed the
//!   hash. Baseline: 64 MiB written on one TCP connection to a reader that discards it.
//! - Discovery time: from starting the second daemon to the first one listing it.
//!
//! Targets (issue 6): p50 RPC round trip under 100 µs; stream throughput at least half of
//! plain TCP. Both are printed as met or not; the numbers are what they are.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Options, Report};
use crate::{root, run_command, step, Failure};

const RPC_SAMPLES: usize = 2000;
const PAYLOAD_BYTES: usize = 32;
const CLIENTS: usize = 8;
const THROUGHPUT_TIME: Duration = Duration::from_secs(2);
const STREAM_BYTES: usize = 64 << 20;
const TARGET_P50_US: f64 = 100.0;

/// A daemon of the benchmark, stopped when dropped.
struct Daemon {
    child: Child,
    state: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(bin: &Path, state: PathBuf, name: &str, port: u16, peer: u16) -> Result<Self, Failure> {
        let _ = std::fs::remove_dir_all(&state);
        let child = Command::new(bin)
            .arg("--state-dir")
            .arg(&state)
            .args(["--name", name, "--bind", "127.0.0.1", "--no-multicast", "--session-port", "0"])
            .args(["--discovery-port", &port.to_string(), "--peer", &format!("127.0.0.1:{peer}"), "--log", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Failure(format!("cannot start {}: {e}", bin.display())))?;
        Ok(Self { child, state })
    }

    fn api(&self) -> Result<Api, Failure> {
        Api::connect(&self.state.join("tuttid.sock"))
    }

    fn wait_api(&self) -> Result<Api, Failure> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.api() {
                Ok(api) => return Ok(api),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

/// A connection to a daemon's local API.
pub(super) struct Api {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Api {
    pub(super) fn connect(socket: &Path) -> Result<Self, Failure> {
        let stream = UnixStream::connect(socket).map_err(|e| Failure(format!("{}: {e}", socket.display())))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Self { stream, reader })
    }

    /// One request; the result, or the daemon's error as a failure.
    pub(super) fn request(&mut self, request: &Value) -> Result<Value, Failure> {
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        self.stream.write_all(&line)?;
        loop {
            let mut answer = String::new();
            if self.reader.read_line(&mut answer)? == 0 {
                return Err(Failure("the daemon closed the API connection".into()));
            }
            let v: Value = serde_json::from_str(&answer)?;
            if v.get("progress").is_some() {
                continue;
            }
            if v["ok"] == Value::Bool(true) {
                return Ok(v["result"].clone());
            }
            return Err(Failure(format!("{request} failed: {}", v["error"])));
        }
    }
}

fn free_udp_port() -> Result<u16, Failure> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The `q`-quantile of sorted samples.
pub(super) fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(i.min(sorted.len().saturating_sub(1))).copied().unwrap_or(f64::NAN)
}

pub(super) fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// Round trips of a 32-byte echo over plain TCP, in microseconds.
fn tcp_round_trips(samples: usize) -> Result<Vec<f64>, Failure> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; PAYLOAD_BYTES];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let mut buf = [7u8; PAYLOAD_BYTES];
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples + 100 {
        let t = Instant::now();
        c.write_all(&buf)?;
        c.read_exact(&mut buf)?;
        if i >= 100 {
            out.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    drop(c);
    let _ = server.join();
    Ok(out)
}

/// Echo messages per second over `CLIENTS` concurrent TCP connections.
fn tcp_messages_per_second() -> Result<f64, Failure> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for s in listener.incoming().take(CLIENTS).flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let _ = s.set_nodelay(true);
                let mut buf = [0u8; PAYLOAD_BYTES];
                while s.read_exact(&mut buf).is_ok() && s.write_all(&buf).is_ok() {}
            });
        }
    });
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || -> std::io::Result<u64> {
                let mut c = TcpStream::connect(addr)?;
                c.set_nodelay(true)?;
                let mut buf = [1u8; PAYLOAD_BYTES];
                let end = Instant::now() + THROUGHPUT_TIME;
                let mut n = 0;
                while Instant::now() < end {
                    c.write_all(&buf)?;
                    c.read_exact(&mut buf)?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for t in threads {
        total += t.join().map_err(|_| Failure("a TCP client panicked".into()))??;
    }
    Ok(total as f64 / THROUGHPUT_TIME.as_secs_f64())
}

/// MB/s of `STREAM_BYTES` over one plain TCP connection.
/// MB/s of AES-256-GCM and of SHA-256 on one core (softbus/examples/crypto_ceiling.rs, built
/// with `--release` like the daemons): the ceiling of an encrypted stream on this machine.
fn crypto_ceiling_mb_s() -> Result<(f64, f64), Failure> {
    let out = Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["run", "-q", "--release", "-p", "softbus", "--example", "crypto_ceiling"])
        .output()?;
    if !out.status.success() {
        return Err(Failure(format!("crypto_ceiling: {}", String::from_utf8_lossy(&out.stderr))));
    }
    let v: Value = serde_json::from_slice(&out.stdout)?;
    Ok((v["aes_256_gcm_mb_s"].as_f64().unwrap_or(f64::NAN), v["sha256_mb_s"].as_f64().unwrap_or(f64::NAN)))
}

fn tcp_stream_mb_s() -> Result<f64, Failure> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<usize> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    });
    let chunk = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    let mut c = TcpStream::connect(addr)?;
    for _ in 0..STREAM_BYTES / chunk.len() {
        c.write_all(&chunk)?;
    }
    drop(c);
    let got = reader.join().map_err(|_| Failure("the TCP reader panicked".into()))??;
    let secs = start.elapsed().as_secs_f64();
    if got != STREAM_BYTES {
        return Err(Failure(format!("the TCP reader got {got} bytes")));
    }
    Ok(STREAM_BYTES as f64 / 1e6 / secs)
}

/// Runs the benchmark.
pub fn run(_options: &Options) -> Result<Report, Failure> {
    step("building tuttid (release)");
    run_command(Command::new(env!("CARGO")).current_dir(root()).args(["build", "--release", "-p", "tuttid"]))?;
    let bin = root().join("target/release/tuttid");
    let work = root().join("target/bench/softbus-tmp");
    std::fs::create_dir_all(&work)?;
    let (port_a, port_b) = (free_udp_port()?, free_udp_port()?);

    step("starting two daemons on loopback");
    let a = Daemon::start(&bin, work.join("a"), "bench-a", port_a, port_b)?;
    let mut api_a = a.wait_api()?;
    let started_b = Instant::now();
    let b = Daemon::start(&bin, work.join("b"), "bench-b", port_b, port_a)?;
    let b_id = b.wait_api()?.request(&json!({"cmd": "status"}))?["device"].as_str().unwrap_or_default().to_string();
    let discovery_ms = loop {
        let devices = api_a.request(&json!({"cmd": "devices"}))?;
        let seen = devices["devices"].as_array().is_some_and(|l| l.iter().any(|d| d["id"] == b_id.as_str()));
        if seen {
            break started_b.elapsed().as_secs_f64() * 1e3;
        }
        if started_b.elapsed() > Duration::from_secs(20) {
            return Err(Failure("bench-a never discovered bench-b".into()));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let code = b.api()?.request(&json!({"cmd": "pair_show"}))?["code"].as_str().unwrap_or_default().to_string();
    api_a.request(&json!({"cmd": "pair", "device": b_id, "code": code}))?;

    step("RPC round trips");
    let payload = "x".repeat(PAYLOAD_BYTES - 2); // a JSON string of 32 bytes
    let call = json!({"cmd": "call", "device": b_id, "method": "echo.echo", "payload": payload});
    for _ in 0..100 {
        api_a.request(&call)?;
    }
    let mut rpc = Vec::with_capacity(RPC_SAMPLES);
    let mut api_rtt = Vec::with_capacity(RPC_SAMPLES);
    for _ in 0..RPC_SAMPLES {
        let t = Instant::now();
        let r = api_a.request(&call)?;
        api_rtt.push(t.elapsed().as_secs_f64() * 1e6);
        rpc.push(r["elapsed_us"].as_f64().unwrap_or(f64::NAN));
    }
    let (rpc, api_rtt) = (sorted(rpc), sorted(api_rtt));

    step("RPC messages per second");
    let socket = a.state.join("tuttid.sock");
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (socket, call) = (socket.clone(), call.clone());
            std::thread::spawn(move || -> Result<u64, Failure> {
                let mut api = Api::connect(&socket)?;
                let end = Instant::now() + THROUGHPUT_TIME;
                let mut n = 0;
                while Instant::now() < end {
                    api.request(&call)?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut calls = 0;
    for t in threads {
        calls += t.join().map_err(|_| Failure("an API client panicked".into()))??;
    }
    let rpc_per_s = calls as f64 / THROUGHPUT_TIME.as_secs_f64();

    step("stream throughput (send of 64 MiB)");
    let file = work.join("stream.bin");
    let data: Vec<u8> = (0..STREAM_BYTES).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0]).collect();
    std::fs::write(&file, &data)?;
    let t = Instant::now();
    let sent = api_a.request(&json!({"cmd": "send", "device": b_id, "path": file.display().to_string()}))?;
    let stream_mb_s = STREAM_BYTES as f64 / 1e6 / t.elapsed().as_secs_f64();
    if sent["bytes"].as_u64() != Some(STREAM_BYTES as u64) {
        return Err(Failure(format!("send reported {sent}")));
    }

    step("plain TCP baseline");
    let tcp = sorted(tcp_round_trips(RPC_SAMPLES)?);
    let tcp_per_s = tcp_messages_per_second()?;
    let tcp_mb_s = tcp_stream_mb_s()?;
    let (aes_mb_s, sha_mb_s) = crypto_ceiling_mb_s()?;
    drop((a, b));
    let _ = std::fs::remove_dir_all(&work);

    let (p50, p99) = (quantile(&rpc, 0.5), quantile(&rpc, 0.99));
    let p50_met = p50 < TARGET_P50_US;
    let stream_met = stream_mb_s >= tcp_mb_s / 2.0;
    let met = |ok: bool| if ok { "met" } else { "not met" };
    let markdown = format!(
        "## Soft bus on loopback (two tuttid daemons)\n\n\
         | figure | soft bus (Noise, AES-256-GCM) | plain TCP echo |\n\
         |---|---|---|\n\
         | RPC round trip p50, {PAYLOAD_BYTES} B | {p50:.1} µs | {:.1} µs |\n\
         | RPC round trip p99 | {p99:.1} µs | {:.1} µs |\n\
         | round trip through the local API, p50 | {:.1} µs | |\n\
         | messages/s, {CLIENTS} clients | {rpc_per_s:.0} | {tcp_per_s:.0} |\n\
         | stream, 64 MiB | {stream_mb_s:.1} MB/s | {tcp_mb_s:.1} MB/s |\n\
         | ceiling: AES-256-GCM on one core, 64 KiB records | {aes_mb_s:.0} MB/s | |\n\
         | ceiling: SHA-256 on one core | {sha_mb_s:.0} MB/s | |\n\
         | discovery (start to listed) | {discovery_ms:.1} ms | |\n\n\
         Targets: p50 RPC round trip under {TARGET_P50_US} µs: {}; stream at least half of plain TCP \
         ({:.1} MB/s): {}. The stream figure is `tutti send` end to end (file read, SHA-256 on both \
         sides, encrypted stream with flow control, file write). The ceiling rows are the cipher and \
         the hash alone on one core (softbus/examples/crypto_ceiling.rs): every streamed byte is \
         sealed once and opened once, and a file is hashed on both sides.\n",
        quantile(&tcp, 0.5),
        quantile(&tcp, 0.99),
        quantile(&api_rtt, 0.5),
        met(p50_met),
        tcp_mb_s / 2.0,
        met(stream_met),
    );
    let json = json!({
        "rpc_round_trip_us": { "p50": p50, "p99": p99, "samples": RPC_SAMPLES, "payload_bytes": PAYLOAD_BYTES },
        "api_round_trip_us": { "p50": quantile(&api_rtt, 0.5), "p99": quantile(&api_rtt, 0.99) },
        "rpc_messages_per_s": rpc_per_s,
        "stream_mb_per_s": stream_mb_s,
        "ceiling_mb_per_s": { "aes_256_gcm": aes_mb_s, "sha256": sha_mb_s },
        "discovery_ms": discovery_ms,
        "baseline_tcp": {
            "round_trip_us": { "p50": quantile(&tcp, 0.5), "p99": quantile(&tcp, 0.99) },
            "messages_per_s": tcp_per_s,
            "stream_mb_per_s": tcp_mb_s,
        },
        "clients": CLIENTS,
        "targets": { "p50_under_100us": p50_met, "stream_half_of_tcp": stream_met },
    });
    Ok(Report { markdown, json })
}
