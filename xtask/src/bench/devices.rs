//! `cargo xtask bench devices`: the soft bus across devices under TCG (docs/softbus/tutti.md):
//! two Tutti guests and a host `tuttid` on one bridge (the segment of `cargo xtask run --nodes
//! 2 --host`), paired as a user pairs them.
//!
//! Figures, each beside plain TCP on the same path where there is one:
//!
//! - host → guest RPC round trip (`echo.echo`, 32 B), p50 and p99: the `elapsed_us` the host
//!   daemon measures around each call (its session, encryption, the bridge, the guest's network
//!   service and `softbusd`, and back). Baseline: a 32-byte echo over one TCP connection from
//!   the host to the guest's `net_echo` (port 7), the same bridge and network service.
//! - host → guest payload throughput: `echo.echo` of a 16 KiB JSON string, both ways counted.
//!   Baseline: 16 KiB echoes over the same TCP connection.
//! - host → guest file: `tutti send` of 4 MiB to node0 (read and hashed on the host, an
//!   encrypted stream with flow control, hashed and written to node0's ext2 disk, synced),
//!   until the command returns. Baseline: 4 MiB through node0's TCP echo, one way's rate.
//! - guest → guest file: `bus send node1 /disk/big.bin` (4 MiB) typed on node0, until it
//!   reports the receiver's confirmation. No baseline.
//! - guest → guest through `/remote/node1` (docs/fs.md, "Remote mounts"): the shell's `cp` of
//!   the 4 MiB file into it then `wc` of it (write and read), then `wc` alone (read; the write
//!   is the difference). No baseline.
//! - guest → guest RPC round trip and payload throughput: the shell's `bus ping` on node0 to
//!   node1 (32 B and 8 KiB, through the local API `svc::softbus`, both guests' soft bus and
//!   network services). No baseline: Tutti has no native TCP echo client program.
//! - discovery: from the guests' start to the host listing both and node0 listing node1.
//!
//! Target (issue 7): RPC round trip under 20 ms; printed as met or not.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::net::{node_address, node_manifest, Namespace, NODE_HOST};
use harness::Running;
use serde_json::json;

use super::softbus::{quantile, sorted, Api};
use super::{Options, Report};
use crate::{deps, image, root, shell_command, step, Failure};

const SAMPLES: usize = 200;
const BIG: usize = 16 * 1024;
const BIG_SAMPLES: usize = 40;
const TARGET_MS: f64 = 20.0;
const FILE_BYTES: usize = 4 << 20;
const WAIT: Duration = Duration::from_secs(90);

fn wait(guest: &mut Running, needle: &str) -> Result<String, Failure> {
    guest
        .wait_for(needle, WAIT)
        .map(|l| l.text)
        .ok_or_else(|| Failure(guest.report(&format!("the console never showed {needle:?}"))))
}

/// Types `bus pair --show` on `guest` (once per guest) and reads the code shown.
fn show_code(guest: &mut Running) -> Result<String, Failure> {
    guest.type_text("bus pair --show\n");
    let line = wait(guest, "pairing code ")?;
    Ok(line.split("pairing code ").nth(1).unwrap_or_default().chars().take(6).collect())
}

/// `bus ping` on `guest`: (p50 µs, p99 µs, KB/s).
fn ping(guest: &mut Running, target: &str, count: usize, bytes: usize) -> Result<(f64, f64, f64), Failure> {
    guest.type_text(&format!("bus ping {target} {count} {bytes}\n"));
    let needle = format!("ping {target}: n={count} bytes={bytes} ");
    let line = wait(guest, &needle)?;
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    Ok((field("p50_us"), field("p99_us"), field("kb_s")))
}

/// TCP echo round trips of `bytes` from inside the namespace to node0's port 7, in µs.
fn tcp_echo(ns: &Namespace, bytes: usize, samples: usize) -> Result<Vec<f64>, Failure> {
    let to = format!("{}:7", node_address(0));
    let thread = ns
        .run_inside(move || -> Result<Vec<f64>, String> {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut stream = loop {
                match TcpStream::connect(&to) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() > deadline => return Err(format!("connecting to {to}: {e}")),
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            };
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
            let mut buf = vec![7u8; bytes];
            let mut out = Vec::with_capacity(samples);
            for i in 0..samples + 10 {
                let t = Instant::now();
                stream.write_all(&buf).map_err(|e| e.to_string())?;
                stream.read_exact(&mut buf).map_err(|e| e.to_string())?;
                if i >= 10 {
                    out.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
            Ok(out)
        })
        .map_err(|e| Failure(format!("entering the namespace: {e}")))?;
    thread.join().map_err(|_| Failure("the TCP client panicked".into()))?.map_err(Failure)
}

/// KiB/s of `bytes` sent from inside the namespace to node0's echo port while a second thread
/// reads them back (one way's rate of a full-duplex stream).
fn tcp_stream(ns: &Namespace, bytes: usize) -> Result<f64, Failure> {
    let to = format!("{}:7", node_address(0));
    let thread = ns
        .run_inside(move || -> Result<f64, String> {
            let stream = TcpStream::connect(&to).map_err(|e| format!("connecting to {to}: {e}"))?;
            stream.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| e.to_string())?;
            let mut reader = stream.try_clone().map_err(|e| e.to_string())?;
            let start = Instant::now();
            let drain = std::thread::spawn(move || -> std::io::Result<()> {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = 0;
                while got < bytes {
                    let n = reader.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                Ok(())
            });
            let mut writer = stream;
            let chunk = vec![5u8; 64 * 1024];
            let mut sent = 0;
            while sent < bytes {
                let n = chunk.len().min(bytes - sent);
                writer.write_all(&chunk[..n]).map_err(|e| e.to_string())?;
                sent += n;
            }
            drain.join().map_err(|_| "the reader panicked".to_string())?.map_err(|e| e.to_string())?;
            Ok(bytes as f64 / 1024.0 / start.elapsed().as_secs_f64())
        })
        .map_err(|e| Failure(format!("entering the namespace: {e}")))?;
    thread.join().map_err(|_| Failure("the TCP client panicked".into()))?.map_err(Failure)
}

/// KB/s of `bytes` each way per round trip.
fn kb_s(bytes: usize, round_trips_us: &[f64]) -> f64 {
    let total: f64 = round_trips_us.iter().sum();
    (2 * bytes * round_trips_us.len()) as f64 / 1024.0 / (total / 1e6)
}

pub fn run(_options: &Options) -> Result<Report, Failure> {
    deps::ensure(&[deps::QEMU, deps::E2FSPROGS])?;
    if !harness::net::is_root() {
        return Err(Failure("the devices benchmark needs root: it creates a network namespace with a bridge".into()));
    }
    let image = image::build()?;
    let bin = crate::nodes::build_tuttid()?;
    let work = root().join("target/bench/devices-tmp");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let bytes = std::fs::read(&image.archive)?;
    let manifest = shell_command::manifest_of(&bytes)?;
    let ns = Namespace::create_bridge("bench", &format!("{NODE_HOST}/24"), 2)
        .map_err(|e| Failure(format!("cannot set up the network: {e}")))?;

    step("booting node0 and node1, starting tuttid on the host side");
    let started = Instant::now();
    let mut guests = Vec::new();
    for i in 0..2 {
        let mut m = node_manifest(&manifest, i).ok_or_else(|| Failure("the manifest has no net or softbus".into()))?;
        if i == 0 {
            // The echo service of the TCP baseline.
            m.push_str(harness::net::ECHO_SERVICE);
        }
        let archive = work.join(format!("node{i}.cpio"));
        std::fs::write(&archive, shell_command::with_manifest_and_files(&bytes, &m, &[])?)?;
        let disk = work.join(format!("node{i}.img"));
        // node0's disk holds the file it sends to node1.
        let files = work.join(format!("node{i}-files"));
        std::fs::create_dir_all(&files)?;
        if i == 0 {
            std::fs::write(
                files.join("big.bin"),
                (0..FILE_BYTES).map(|i| (i * 13 + i / 4099) as u8).collect::<Vec<u8>>(),
            )?;
        }
        crate::run_command(
            Command::new("mke2fs").args(["-q", "-t", "ext2", "-d"]).arg(&files).arg("-F").arg(&disk).arg("24M"),
        )?;
        let guest = ns
            .node(harness::Machine::new(&image.kernel).initrd(&archive).memory("64M"), i, &disk)
            .deadline(Duration::from_secs(600))
            .spawn()
            .map_err(|e| Failure(format!("QEMU: {e}")))?;
        guests.push(guest);
    }
    let state = work.join("host");
    std::fs::create_dir_all(&state)?;
    let mut daemon = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(bin.join("tuttid"))
        .arg("--state-dir")
        .arg(&state)
        .args(["--name", "host", "--log", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Failure(format!("cannot start tuttid: {e}")))?;
    let result = measure(&ns, &mut guests, &state, &bin, &work, started);
    let _ = daemon.kill();
    let _ = daemon.wait();
    for guest in guests {
        drop(guest.stop());
    }
    result
}

fn measure(
    ns: &Namespace,
    guests: &mut [Running],
    state: &std::path::Path,
    bin: &std::path::Path,
    work: &std::path::Path,
    started: Instant,
) -> Result<Report, Failure> {
    let [a, b] = guests else { return Err(Failure("two guests".into())) };
    let socket = state.join("tuttid.sock");
    let deadline = Instant::now() + WAIT;
    let mut api = loop {
        match Api::connect(&socket) {
            Ok(api) => break api,
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let id_of = |guest: &mut Running, name: &str| -> Result<String, Failure> {
        let line = wait(guest, &format!("softbus: {name} ("))?;
        Ok(line.split('(').nth(1).and_then(|s| s.split(')').next()).unwrap_or_default().to_string())
    };
    let (id_a, _) = (id_of(a, "node0")?, id_of(b, "node1")?);
    let discovery_s = loop {
        let devices = api.request(&json!({"cmd": "devices"}))?;
        let names: Vec<&str> = devices["devices"]
            .as_array()
            .map(|l| l.iter().filter_map(|d| d["name"].as_str()).collect())
            .unwrap_or_default();
        if names.contains(&"node0")
            && names.contains(&"node1")
            && a.wait_for("found node1", Duration::from_millis(10)).is_some()
        {
            break started.elapsed().as_secs_f64();
        }
        if started.elapsed() > WAIT {
            return Err(Failure(a.report("the devices never all discovered each other")));
        }
        std::thread::sleep(Duration::from_millis(50));
    };

    step("pairing host-node0 and node0-node1");
    let code = show_code(a)?;
    api.request(&json!({"cmd": "pair", "device": id_a, "code": code}))?;
    let code = show_code(b)?;
    a.type_text(&format!("bus pair node1 {code}\n"));
    wait(a, "paired with node1 (")?;

    step("host -> guest round trips");
    let call = |payload: &str| json!({"cmd": "call", "device": id_a, "method": "echo.echo", "payload": payload});
    let small = call(&"x".repeat(30));
    for _ in 0..10 {
        api.request(&small)?;
    }
    let mut rpc = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        rpc.push(api.request(&small)?["elapsed_us"].as_f64().unwrap_or(f64::NAN));
    }
    let rpc = sorted(rpc);
    let big = call(&"x".repeat(BIG - 2));
    let mut big_rpc = Vec::with_capacity(BIG_SAMPLES);
    for _ in 0..BIG_SAMPLES {
        big_rpc.push(api.request(&big)?["elapsed_us"].as_f64().unwrap_or(f64::NAN));
    }
    step("host -> guest plain TCP");
    let tcp = sorted(tcp_echo(ns, 32, SAMPLES)?);
    let tcp_big = tcp_echo(ns, BIG, BIG_SAMPLES)?;

    step("host -> guest file (tutti send)");
    let file = work.join("file.bin");
    std::fs::write(&file, (0..FILE_BYTES).map(|i| (i * 7 + i / 4099) as u8).collect::<Vec<u8>>())?;
    let t = Instant::now();
    crate::run_command(
        Command::new(bin.join("tutti"))
            .arg("--state-dir")
            .arg(state)
            .arg("send")
            .arg(&id_a)
            .arg(&file)
            .stdout(Stdio::null()),
    )?;
    let send_s = t.elapsed().as_secs_f64();
    wait(a, &format!("({FILE_BYTES} bytes) from host"))?;
    let file_kb = FILE_BYTES as f64 / 1024.0 / send_s;
    let tcp_file_kb = tcp_stream(ns, FILE_BYTES)?;

    step("guest -> guest (bus ping on node0)");
    ping(a, "node1", 10, 32)?;
    let (g50, g99, _) = ping(a, "node1", SAMPLES, 32)?;
    let (_, _, g_kb) = ping(a, "node1", BIG_SAMPLES, 8192)?;
    step("guest -> guest file (bus send on node0)");
    let t = Instant::now();
    a.type_text("bus send node1 /disk/big.bin\n");
    wait(a, "sent big.bin to node1")?;
    let g_file_kb = FILE_BYTES as f64 / 1024.0 / t.elapsed().as_secs_f64();
    wait(b, &format!("({FILE_BYTES} bytes) from node0"))?;
    step("guest -> guest through /remote/node1 (cp and wc on node0)");
    let t = Instant::now();
    a.type_text("cp /disk/big.bin /remote/node1/w.bin\nwc /remote/node1/w.bin\n");
    wait(a, &format!("{FILE_BYTES} bytes: /remote/node1/w.bin"))?;
    let both_s = t.elapsed().as_secs_f64();
    // A second read, under another name so that its line is new.
    let t = Instant::now();
    a.type_text("mv /remote/node1/w.bin /remote/node1/r.bin\nwc /remote/node1/r.bin\n");
    wait(a, &format!("{FILE_BYTES} bytes: /remote/node1/r.bin"))?;
    let read_s = t.elapsed().as_secs_f64();
    let remote_read_kb = FILE_BYTES as f64 / 1024.0 / read_s;
    let remote_write_kb = FILE_BYTES as f64 / 1024.0 / (both_s - read_s).max(1e-3);

    let (p50, p99) = (quantile(&rpc, 0.5) / 1e3, quantile(&rpc, 0.99) / 1e3);
    let (t50, t99) = (quantile(&tcp, 0.5) / 1e3, quantile(&tcp, 0.99) / 1e3);
    let (host_kb, tcp_kb) = (kb_s(BIG, &big_rpc), kb_s(BIG, &tcp_big));
    let met = |ms: f64| if ms < TARGET_MS { "met" } else { "**not met**" };
    let markdown = format!(
        "## Soft bus across devices (TCG guests)\n\n\
         Two Tutti guests and a host `tuttid` on one bridge; {SAMPLES} calls each (`cargo xtask bench devices`).\n\n\
         | figure | soft bus | plain TCP, same path |\n|---|---:|---:|\n\
         | host → guest RPC round trip p50 / p99, 32 B | {p50:.2} / {p99:.2} ms | {t50:.2} / {t99:.2} ms |\n\
         | host → guest payload throughput, 16 KiB echoes | {host_kb:.0} KiB/s | {tcp_kb:.0} KiB/s |\n\
         | host → guest file, {} MiB (`tutti send`, SHA-256 checked, written to ext2) | {file_kb:.0} KiB/s | {tcp_file_kb:.0} KiB/s (one way of a TCP echo) |\n\
         | guest → guest RPC round trip p50 / p99, 32 B | {:.2} / {:.2} ms | – |\n\
         | guest → guest payload throughput, 8 KiB echoes | {g_kb:.0} KiB/s | – |\n\
         | guest → guest file, {} MiB (`bus send`, ext2 to ext2) | {g_file_kb:.0} KiB/s | – |\n\
         | guest → guest `/remote` write / read, {} MiB (`cp` into, `wc` of `/remote/node1/…`) | {remote_write_kb:.0} / {remote_read_kb:.0} KiB/s | – |\n\
         | discovery: all three devices see each other | {discovery_s:.1} s after boot | |\n\n\
         Target: RPC round trip under {TARGET_MS} ms: host → guest {}, guest → guest {}.\n",
        FILE_BYTES >> 20,
        g50 / 1e3,
        g99 / 1e3,
        FILE_BYTES >> 20,
        FILE_BYTES >> 20,
        met(p50),
        met(g50 / 1e3),
    );
    let json = json!({
        "host_to_guest": { "rpc_ms": { "p50": p50, "p99": p99 }, "payload_kib_s": host_kb },
        "tcp_host_to_guest": { "round_trip_ms": { "p50": t50, "p99": t99 }, "payload_kib_s": tcp_kb, "stream_kib_s": tcp_file_kb },
        "file_host_to_guest": { "bytes": FILE_BYTES, "kib_s": file_kb },
        "guest_to_guest": { "rpc_ms": { "p50": g50 / 1e3, "p99": g99 / 1e3 }, "payload_kib_s": g_kb, "file_kib_s": g_file_kb, "remote_write_kib_s": remote_write_kb, "remote_read_kib_s": remote_read_kb },
        "discovery_s": discovery_s,
        "samples": SAMPLES,
        "targets": { "rpc_under_20ms": p50 < TARGET_MS && g50 / 1e3 < TARGET_MS },
    });
    Ok(Report { markdown, json })
}
