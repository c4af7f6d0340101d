//! Test service (docs/net.md): Tutti as the client of host services, through `svc::net`.
//! Its manifest `arg` lines say what to do, in this order:
//!
//! - `multicast=<group>:<port>`: join the IPv4 group and bind the port (before the rest, so
//!   the host can send while the other steps run); at the end, wait for one datagram on it;
//! - `udp=<a.b.c.d>:<port>`: send `hello from tutti` from port 5000 and wait for the reply;
//! - `tcp=<a.b.c.d>:<port>`: connect, send 256 KiB of a pattern, then read the host's answer
//!   to its end and check it is 256 KiB of the host's pattern.
//!
//! Prints `net_client: ok` when every step passed.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use rt::println;
use svc::net::{Net, SocketAddr};

rt::entry!(main);

const SECOND: u64 = 1_000_000_000;
const TCP_BYTES: usize = 256 * 1024;

/// The byte at `i` of the pattern with `seed` (the host test computes the same).
fn pattern(i: usize, seed: u8) -> u8 {
    ((i * 31 + i / 251) as u8) ^ seed
}

fn main() -> i32 {
    match run() {
        Ok(()) => {
            println!("net_client: ok");
            svc::exit(0)
        }
        Err(e) => {
            println!("net_client: FAILED: {e}");
            svc::exit(1)
        }
    }
}

fn address(text: &str) -> Result<SocketAddr, String> {
    let bad = || format!("bad address {text:?}: a.b.c.d:port");
    let (ip, port) = text.split_once(':').ok_or_else(bad)?;
    let mut addr = [0u8; 4];
    let mut parts = ip.split('.');
    for byte in addr.iter_mut() {
        *byte = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(SocketAddr { addr, port: port.parse().map_err(|_| bad())? })
}

fn run() -> Result<(), String> {
    let args = svc::arguments().map_err(|e| format!("arguments: {e}"))?;
    let net = Net::connect(10 * SECOND).map_err(|e| format!("{e}"))?;
    let config = net.wait_configured(30 * SECOND).map_err(|e| format!("no address: {e}"))?;
    let [a, b, c, d] = config.addr;
    println!("net_client: address {a}.{b}.{c}.{d}/{}", config.prefix);
    let find = |key: &str| args.iter().find_map(|arg| arg.strip_prefix(key)).map(address).transpose();

    let multicast = match find("multicast=")? {
        Some(group) => {
            net.join_multicast(group.addr).map_err(|e| format!("joining {group}: {e}"))?;
            let socket = net.bind_udp(group.port).map_err(|e| format!("binding {}: {e}", group.port))?;
            println!("net_client: joined {group}");
            Some((group, socket))
        }
        None => None,
    };

    if let Some(to) = find("udp=")? {
        let socket = net.bind_udp(5000).map_err(|e| format!("binding udp 5000: {e}"))?;
        let mut reply = [0u8; 256];
        // The first datagram may wait for ARP; send again until a reply comes.
        let mut answer = None;
        for _ in 0..20 {
            socket.send_to(b"hello from tutti", to).map_err(|e| format!("udp send: {e}"))?;
            match socket.recv_from(&mut reply, SECOND) {
                Ok(got) => {
                    answer = Some(got);
                    break;
                }
                Err(svc::net::NetError::TimedOut) => {}
                Err(e) => return Err(format!("udp receive: {e}")),
            }
        }
        let (n, from) = answer.ok_or("no udp reply")?;
        let text = core::str::from_utf8(&reply[..n]).unwrap_or("(not UTF-8)");
        println!("net_client: udp reply {text:?} from {from}");
    }

    if let Some(to) = find("tcp=")? {
        let stream = net.connect_tcp(to, 20 * SECOND).map_err(|e| format!("connecting to {to}: {e}"))?;
        println!("net_client: connected to {to}");
        // Sent and checked in pieces: the client's heap is small.
        let mut chunk = [0u8; 4096];
        let mut sent = 0;
        while sent < TCP_BYTES {
            for (j, b) in chunk.iter_mut().enumerate() {
                *b = pattern(sent + j, 0x11);
            }
            stream.send_all(&chunk, 60 * SECOND).map_err(|e| format!("tcp send: {e}"))?;
            sent += chunk.len();
        }
        let (mut received, mut good) = (0usize, true);
        loop {
            let n = stream.recv(&mut chunk, 60 * SECOND).map_err(|e| format!("tcp receive: {e}"))?;
            if n == 0 {
                break;
            }
            good &= chunk[..n].iter().enumerate().all(|(j, &b)| b == pattern(received + j, 0x77));
            received += n;
        }
        good &= received == TCP_BYTES;
        println!("net_client: tcp sent {sent} bytes, received {received} bytes, pattern ok: {good}");
        if !good {
            return Err("the host's answer is wrong".into());
        }
    }

    if let Some((group, socket)) = multicast {
        let mut buffer = [0u8; 256];
        let (n, from) = socket.recv_from(&mut buffer, 30 * SECOND).map_err(|e| format!("multicast receive: {e}"))?;
        let text = core::str::from_utf8(&buffer[..n]).unwrap_or("(not UTF-8)");
        println!("net_client: multicast {text:?} from {from} to {group}");
    }
    Ok(())
}
