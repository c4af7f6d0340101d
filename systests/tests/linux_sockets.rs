//! Sockets for Linux programs (docs/linux.md, "Sockets"): `tools/linux-tests/sockets.c` (TCP
//! connect, send, poll, receive, non-blocking connect; UDP sendto/recvfrom and connected; a
//! refused connection and bad arguments; a listening server) against peers this test runs on
//! the host: a TCP echo server, a UDP echo server and a client of the program's server. The
//! program runs on the host (peers at 127.0.0.1) and on Tutti through linuxd and the network
//! service, over QEMU's user networking (the host is 10.0.2.2; the server's port is forwarded),
//! and the two outputs must be the same. Needs no privileges.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;
use systests::linux::{compile, disk, machine_with, read, results};

const WAIT: Duration = Duration::from_secs(60);

/// The host's peers, on ephemeral ports of 127.0.0.1, served by background threads.
struct Peers {
    tcp: u16,
    udp: u16,
    closed: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn peers() -> Peers {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ports =
        Peers { tcp: tcp.local_addr().unwrap().port(), udp: udp.local_addr().unwrap().port(), closed: free_port() };
    // TCP: a 4-byte big-endian length, then that many bytes, echoed back; then the host closes.
    std::thread::spawn(move || {
        for stream in tcp.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let _ = stream.set_read_timeout(Some(WAIT));
                let mut header = [0u8; 4];
                if stream.read_exact(&mut header).is_err() {
                    return;
                }
                let mut left = u32::from_be_bytes(header) as usize;
                let mut buf = vec![0u8; 16 * 1024];
                while left > 0 {
                    let n = match stream.read(&mut buf[..left.min(16 * 1024)]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                    left -= n;
                }
            });
        }
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..n], from);
        }
    });
    ports
}

/// Connects to the program's server at 127.0.0.1:`port` (retrying until it listens), sends a
/// line and returns the answer.
fn client(port: u16) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + WAIT * 2;
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.set_read_timeout(Some(WAIT));
                // Through QEMU's forwarding the connection is accepted before the guest listens;
                // an early one is reset or closed without an answer: try again.
                if s.write_all(b"from the host\n").is_ok() {
                    let mut answer = String::new();
                    if BufReader::new(s).read_line(&mut answer).is_ok() && !answer.is_empty() {
                        return answer;
                    }
                }
            }
            if std::time::Instant::now() > deadline {
                return String::from("(no answer)");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    })
}

#[test]
fn linux_sockets_reach_host_peers_as_on_the_host() {
    let program = compile("sockets", &["-O2"]);
    let p = peers();
    let args = |host: &str, listen: u16| {
        [host.to_string(), p.tcp.to_string(), p.udp.to_string(), p.closed.to_string(), listen.to_string()]
    };
    // On the host.
    let listen = free_port();
    let answer = client(listen);
    let host = Command::new(&program).args(args("127.0.0.1", listen)).output().expect("runs on the host");
    assert!(host.status.success(), "on the host: {host:?}");
    assert_eq!(answer.join().unwrap(), "hello from the host\n");
    let expected = results(&String::from_utf8_lossy(&host.stdout));
    assert!(expected.last().is_some_and(|l| l == "R done"), "{expected:?}");

    // On Tutti: the guest listens on 8080, forwarded from a free host port.
    let forwarded = free_port();
    let img = disk("linux-sockets", &[("sockets", read(&program))]);
    let command = format!("linux /disk/sockets {}", args("10.0.2.2", 8080).join(" "));
    let machine = machine_with("linux-sockets", &img, &[&command], Some("8M"), None, true)
        .deadline(Duration::from_secs(180))
        .arg("-netdev")
        .arg(&format!("user,id=n0,hostfwd=tcp:127.0.0.1:{forwarded}-:8080"))
        .arg("-device")
        .arg("virtio-net-pci,netdev=n0");
    let mut running = machine.spawn().unwrap();
    assert!(running.wait_for("R listening", WAIT * 2).is_some(), "{}", running.report("the server did not listen"));
    let answer = client(forwarded).join().unwrap();
    assert_eq!(answer, "hello from the host\n", "{}", running.report("the server's answer"));
    let run = running.finish();
    let outputs = systests::shell_outputs(&run);
    let (text, status) = systests::linux::output(&outputs, &command);
    assert_eq!(status, 0, "{}", run.report(&text));
    systests::linux::assert_same_lines("sockets", &results(&text), &expected, &run.report(&text));
}
