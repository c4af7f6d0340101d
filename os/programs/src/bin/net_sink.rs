//! A TCP sink over the network service (docs/net.md), for the fault-isolation test and the
//! network benchmark: listens on a port, and for each connection counts the bytes until the
//! peer closes its side and hashes them (64-bit FNV-1a), then answers one line
//! `<bytes> <fnv1a as 16 hex digits>\n` on the same connection, prints
//! `net_sink: received <bytes> bytes from <peer>, fnv1a <hex>` and closes.
//!
//! Manifest `arg` lines: `port=<n>` (default 9), and `kill=<service>@<bytes>`: once the first
//! connection has brought that many bytes, ask init to kill `<service>` (the entry needs
//! `admin`) and print `net_sink: asked init to kill <service> after <n> bytes`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use rt::println;
use rt::sys;
use svc::boot;
use svc::net::{Net, NetError};

rt::entry!(main);

const SECOND: u64 = 1_000_000_000;

/// Why the sink stopped.
#[derive(Debug)]
enum SinkError {
    Net(NetError),
    /// A bad `arg` line.
    Argument(String),
    /// init refused or failed the kill.
    Kill(String),
}

impl core::fmt::Display for SinkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SinkError::Net(e) => write!(f, "{e}"),
            SinkError::Argument(arg) => write!(f, "bad argument {arg:?} (port=<n>, kill=<service>@<bytes>)"),
            SinkError::Kill(why) => write!(f, "cannot kill: {why}"),
        }
    }
}

impl From<NetError> for SinkError {
    fn from(e: NetError) -> SinkError {
        SinkError::Net(e)
    }
}

fn main() -> i32 {
    match run() {
        Ok(()) => svc::exit(0),
        Err(e) => {
            println!("net_sink: FAILED: {e}");
            svc::exit(1)
        }
    }
}

/// The configuration from the `arg` lines.
struct Config {
    port: u16,
    kill: Option<(String, u64)>,
}

fn config() -> Result<Config, SinkError> {
    let args = svc::arguments().map_err(|e| SinkError::Argument(alloc::format!("{e}")))?;
    let mut config = Config { port: 9, kill: None };
    for arg in args {
        let bad = || SinkError::Argument(arg.clone());
        if let Some(port) = arg.strip_prefix("port=") {
            config.port = port.parse().ok().filter(|&p| p != 0).ok_or_else(bad)?;
        } else if let Some(kill) = arg.strip_prefix("kill=") {
            let (service, after) = kill.split_once('@').ok_or_else(bad)?;
            config.kill = Some((service.into(), after.parse().map_err(|_| bad())?));
        } else {
            return Err(bad());
        }
    }
    Ok(config)
}

/// Asks init to kill the service called `name`.
fn kill(name: &str) -> Result<(), SinkError> {
    for index in 0..64 {
        match svc::init().call(&boot::Request::Status { index }, sys::FOREVER_NS) {
            Ok(boot::Response::Service { name: n, .. }) if svc::name_str(&n) == name => {
                return match svc::init().call(&boot::Request::Kill { index }, sys::FOREVER_NS) {
                    Ok(boot::Response::Done) => Ok(()),
                    other => Err(SinkError::Kill(alloc::format!("init answered {other:?}"))),
                };
            }
            Ok(boot::Response::Service { .. }) => {}
            other => return Err(SinkError::Kill(alloc::format!("no service {name} ({other:?})"))),
        }
    }
    Err(SinkError::Kill(alloc::format!("no service {name}")))
}

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash = (hash ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    hash
}

fn run() -> Result<(), SinkError> {
    let mut config = config()?;
    let net = Net::connect(10 * SECOND)?;
    let ip = net.wait_configured(30 * SECOND)?;
    let [a, b, c, d] = ip.addr;
    let listener = net.listen(config.port, 1)?;
    println!("net_sink: listening on {a}.{b}.{c}.{d}:{}", config.port);
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let stream = match listener.accept(SECOND) {
            Ok(stream) => stream,
            Err(NetError::TimedOut) => continue,
            Err(e) => return Err(e.into()),
        };
        let peer = stream.peer();
        let mut total = 0u64;
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        let outcome = loop {
            match stream.recv(&mut buffer, 60 * SECOND) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    hash = fnv1a(hash, &buffer[..n]);
                    total += n as u64;
                    if let Some((service, after)) = config.kill.take_if(|(_, after)| total >= *after) {
                        kill(&service)?;
                        println!("net_sink: asked init to kill {service} after {total} bytes (at least {after})");
                    }
                }
                Err(e) => break Err(e),
            }
        };
        match outcome {
            Ok(()) => {
                let report = alloc::format!("{total} {hash:016x}\n");
                let sent = stream.send_all(report.as_bytes(), 30 * SECOND);
                println!("net_sink: received {total} bytes from {peer}, fnv1a {hash:016x}");
                if let Err(e) = sent {
                    println!("net_sink: could not answer {peer}: {e:?}");
                }
            }
            Err(e) => println!("net_sink: connection from {peer} failed after {total} bytes: {e:?}"),
        }
    }
}
