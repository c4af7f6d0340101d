//! Test service (docs/net.md): a TCP and UDP echo server on port 7 over the network service.
//! Prints `net_echo: listening on <address>:7` once the interface has an address, then serves
//! one TCP connection at a time (echoes until the peer closes, then reports the byte count) and
//! answers each UDP datagram with the same bytes, checking for both in turn.
#![no_std]
#![no_main]

extern crate alloc;

use rt::println;
use svc::net::{Net, NetError};

rt::entry!(main);

const PORT: u16 = 7;
const SECOND: u64 = 1_000_000_000;

fn main() -> i32 {
    match run() {
        Ok(()) => svc::exit(0),
        Err(e) => {
            println!("net_echo: FAILED: {e}");
            svc::exit(1)
        }
    }
}

fn run() -> Result<(), NetError> {
    let net = Net::connect(10 * SECOND)?;
    let config = net.wait_configured(30 * SECOND)?;
    let [a, b, c, d] = config.addr;
    let listener = net.listen(PORT, 2)?;
    let udp = net.bind_udp(PORT)?;
    println!("net_echo: listening on {a}.{b}.{c}.{d}:{PORT} (tcp and udp)");
    let mut buffer = [0u8; 8192];
    let mut datagrams = 0u64;
    loop {
        match listener.accept(20_000_000) {
            Ok(stream) => {
                let peer = stream.peer();
                let mut total = 0u64;
                let outcome = loop {
                    match stream.recv(&mut buffer, 30 * SECOND) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            if let Err(e) = stream.send_all(&buffer[..n], 30 * SECOND) {
                                break Err(e);
                            }
                            total += n as u64;
                        }
                        Err(e) => break Err(e),
                    }
                };
                match outcome {
                    Ok(()) => println!("net_echo: echoed {total} bytes to {peer}"),
                    Err(e) => println!("net_echo: connection from {peer} failed after {total} bytes: {e}"),
                }
            }
            Err(NetError::TimedOut) => {}
            Err(e) => return Err(e),
        }
        match udp.recv_from(&mut buffer, 20_000_000) {
            Ok((n, from)) => {
                udp.send_to(&buffer[..n], from)?;
                datagrams += 1;
                if datagrams <= 3 {
                    println!("net_echo: echoed a datagram of {n} bytes to {from}");
                }
            }
            Err(NetError::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
}
