//! The network (docs/net.md): the driver `svc_netdrv` (virtio-net) and the stack `svc_net`
//! (smoltcp, sockets over IPC) as two user-space services, tested against real host peers. Most tests create a network
//! namespace with a tap device (`harness::net::Namespace`, removed again at the end, also on
//! failure), run QEMU inside it, and talk to Tutti from host sockets made in the namespace.
//! They need root (CI runs as root) and fail with a message saying so otherwise. The DHCP test
//! uses QEMU's user networking and needs nothing.

use harness::net::{fnv1a, send_to_sink, Namespace, RawSocket, SinkReport, TAP};
use harness::{Machine, Running};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use systests::{archive_with_manifest, tutti};

/// The host's address on the tap, and Tutti's.
const HOST: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const GUEST: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
/// How long a console line or a transfer may take (the machine's deadline is the hard limit).
const WAIT: Duration = Duration::from_secs(40);

/// The name service, the network driver and the network service with a static address on the
/// tap's subnet (or DHCP), then `extra` (test programs as services).
fn manifest(addressing: &str, extra: &str) -> String {
    format!(
        "\
service names
    program /bin/svc_names
    priority 40
    restart always

service netdrv
    program /bin/svc_netdrv
    priority 35
    quota 512K
    restart always
    backoff 10ms 1s
    ports 0xcf8-0xcff shared
    irq 10
    irq 11
    device-memory 0xfe000000 0xc00000 shared

service net
    program /bin/svc_net
    priority 30
    quota 2M
    restart always
    endpoint netdrv
{addressing}
{extra}"
    )
}

fn static_address() -> String {
    format!("    arg address={GUEST}/24\n    arg gateway={HOST}\n")
}

const ECHO: &str = harness::net::ECHO_SERVICE;

/// A namespace for one test, or a failure that says root is needed.
fn namespace(tag: &str) -> Namespace {
    match Namespace::create(tag, &format!("{HOST}/24")) {
        Ok(ns) => ns,
        Err(e) => panic!("cannot set up the network namespace: {e}"),
    }
}

/// Boots Tutti in `ns` with `manifest`, the NIC on the tap.
fn boot_on_tap(ns: &Namespace, name: &str, manifest: &str) -> Running {
    let machine: Machine = tutti("")
        .initrd(archive_with_manifest(name, Some(manifest)))
        .memory("16M")
        .deadline(Duration::from_secs(120))
        .in_namespace(ns.name())
        .arg("-netdev")
        .arg(&format!("tap,id=n0,ifname={TAP},script=no,downscript=no"))
        .arg("-device")
        .arg("virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56");
    machine.spawn().expect("QEMU starts")
}

#[track_caller]
fn wait_for(running: &mut Running, needle: &str) {
    if running.wait_for(needle, WAIT).is_none() {
        panic!("{}", running.report(&format!("the console never showed {needle:?}")));
    }
}

/// `len` bytes of a pattern that does not repeat at a power of two.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + i / 251) as u8) ^ seed).collect()
}

/// Connects from the namespace to the guest's echo port, sends `data` and reads it back.
fn echo_from_host(ns: &Namespace, data: Vec<u8>) -> Result<(Vec<u8>, Duration), String> {
    let thread = ns
        .run_inside(move || -> Result<(Vec<u8>, Duration), String> {
            let to = SocketAddrV4::new(GUEST, 7);
            let start = Instant::now();
            let mut stream = loop {
                match TcpStream::connect_timeout(&to.into(), Duration::from_secs(5)) {
                    Ok(s) => break s,
                    Err(e) if start.elapsed() < Duration::from_secs(20) => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Err(e) => return Err(format!("connecting to {to}: {e}")),
                }
            };
            stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
            stream.set_write_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
            let start = Instant::now();
            let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
            let sender = std::thread::spawn(move || -> Result<(), String> {
                writer.write_all(&data).map_err(|e| format!("sending: {e}"))?;
                writer.shutdown(std::net::Shutdown::Write).map_err(|e| format!("shutdown: {e}"))
            });
            let mut back = Vec::new();
            let read = stream.read_to_end(&mut back).map_err(|e| format!("receiving after {} bytes: {e}", back.len()));
            sender.join().map_err(|_| "the sender panicked".to_string())??;
            read?;
            Ok((back, start.elapsed()))
        })
        .map_err(|e| e.to_string())?;
    thread.join().map_err(|_| "the host thread panicked".to_string())?
}

fn checksum(bytes: &[u8]) -> u64 {
    fnv1a(bytes)
}

#[test]
fn net_the_host_reaches_a_tcp_echo_service_on_tutti_over_a_tap() {
    let ns = namespace("echo");
    let mut running = boot_on_tap(&ns, "net-echo.cpio", &manifest(&static_address(), ECHO));
    wait_for(&mut running, "net_echo: listening on 10.99.0.2:7");
    let data = pattern(1 << 20, 0x5a);
    let result = echo_from_host(&ns, data.clone());
    let (back, took) = match result {
        Ok(r) => r,
        Err(e) => panic!("{}", running.report(&format!("the echo failed: {e}"))),
    };
    assert_eq!(back.len(), data.len(), "{}", running.report("echoed length"));
    assert_eq!(checksum(&back), checksum(&data), "{}", running.report("echoed bytes"));
    assert!(back == data, "the echoed bytes differ");
    eprintln!("1 MiB echoed in {took:.2?} ({:.0} KiB/s each way)", 1024.0 / took.as_secs_f64());
    wait_for(&mut running, "net_echo: echoed 1048576 bytes to 10.99.0.1:");
    let run = running.stop();
    assert!(run.crash().is_none(), "{}", run.report("the kernel crashed"));
    assert!(!run.printed("init: service net"), "{}", run.report("a network service ended"));
}

/// Fault isolation: the driver is killed while the host sends 4 MiB; init restarts it, the
/// stack attaches the new one and keeps its connection, TCP retransmits what was lost, and
/// every byte arrives.
#[test]
fn net_killing_the_driver_during_a_tcp_transfer_loses_no_byte() {
    const BYTES: usize = 4 << 20;
    let ns = namespace("kill");
    let sink = "
service sink
    program /bin/net_sink
    priority 10
    restart never
    endpoint net
    admin
    arg port=9
    arg kill=netdrv@1048576
";
    let mut running = boot_on_tap(&ns, "net-kill.cpio", &manifest(&static_address(), sink));
    wait_for(&mut running, "net_sink: listening on 10.99.0.2:9");
    let data = Arc::new(pattern(BYTES, 0x6b));
    let report = match send_to_sink(&ns, SocketAddrV4::new(GUEST, 9), data.clone(), Duration::from_secs(60)) {
        Ok(r) => r,
        Err(e) => panic!("{}", running.report(&format!("the transfer failed: {e}"))),
    };
    assert_eq!(report.line, SinkReport::expected(&data), "{}", running.report("the sink's count and checksum"));
    eprintln!("4 MiB with the driver killed at 1 MiB in {:.2?}", report.elapsed);
    wait_for(&mut running, "init: killing service netdrv (asked by sink)");
    wait_for(&mut running, "init: restarted service netdrv (restart 1)");
    wait_for(&mut running, "[INFO] net: the driver has gone");
    wait_for(&mut running, "[INFO] net: the driver is back (MAC unchanged)");
    wait_for(&mut running, &format!("net_sink: received {BYTES} bytes from 10.99.0.1:"));
    let run = running.stop();
    assert!(run.crash().is_none(), "{}", run.report("the kernel crashed"));
    assert!(run.printed("net_sink: asked init to kill netdrv after"), "{}", run.report("no kill"));
    // The driver ended once (killed, restarted); nothing else ended or restarted.
    let ends: Vec<&str> = run.lines.iter().map(|l| l.text.as_str()).filter(|t| t.contains("init: service ")).collect();
    assert!(
        ends.len() == 1
            && ends[0].starts_with("init: service netdrv ended without reporting (panic or killed); restarting in"),
        "{}",
        run.report(&format!("services that ended: {ends:?}"))
    );
    let restarts = run.lines.iter().filter(|l| l.text.contains("init: restarted service")).count();
    assert_eq!(restarts, 1, "{}", run.report("only the driver restarts"));
    assert!(!run.printed("panicked"), "{}", run.report("a task panicked"));
    let at = |needle: &str| run.find(needle).map(|l| l.at);
    if let (Some(kill), Some(back), Some(done)) = (
        at("init: killing service netdrv"),
        at("net: the driver is back"),
        at(&format!("net_sink: received {BYTES} bytes")),
    ) {
        eprintln!("driver back {:.0?} after the kill, transfer done {:.0?} after it", back - kill, done - kill);
    }
}

/// The host's side of `net_client`: a TCP server that reads 256 KiB and answers 256 KiB, a
/// UDP server that answers one datagram, and a multicast sender, all in the namespace.
#[test]
fn net_tutti_reaches_tcp_udp_and_multicast_services_on_the_host() {
    const TCP_BYTES: usize = 256 * 1024;
    let ns = namespace("client");
    // Multicast to 239.0.0.0/8 leaves through the tap.
    ns.ip(&["route", "add", "239.0.0.0/8", "dev", TAP]).expect("a multicast route");
    let tcp = ns
        .run_inside(|| -> Result<Vec<u8>, String> {
            let listener = TcpListener::bind(SocketAddrV4::new(HOST, 9000)).map_err(|e| e.to_string())?;
            listener.set_nonblocking(true).map_err(|e| e.to_string())?;
            let start = Instant::now();
            let (mut stream, _) = loop {
                match listener.accept() {
                    Ok(s) => break s,
                    Err(_) if start.elapsed() < WAIT => std::thread::sleep(Duration::from_millis(20)),
                    Err(e) => return Err(format!("no connection from Tutti: {e}")),
                }
            };
            stream.set_nonblocking(false).map_err(|e| e.to_string())?;
            stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
            let mut got = vec![0u8; TCP_BYTES];
            stream.read_exact(&mut got).map_err(|e| format!("reading Tutti's bytes: {e}"))?;
            stream.write_all(&pattern(TCP_BYTES, 0x77)).map_err(|e| format!("answering: {e}"))?;
            Ok(got)
        })
        .expect("a host thread in the namespace");
    let udp = ns
        .run_inside(|| -> Result<(Vec<u8>, std::net::SocketAddr), String> {
            let socket = UdpSocket::bind(SocketAddrV4::new(HOST, 9001)).map_err(|e| e.to_string())?;
            socket.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
            let mut buffer = [0u8; 256];
            let (n, from) = socket.recv_from(&mut buffer).map_err(|e| format!("no datagram from Tutti: {e}"))?;
            socket.send_to(b"hello from the host", from).map_err(|e| e.to_string())?;
            Ok((buffer[..n].to_vec(), from))
        })
        .expect("a host thread in the namespace");
    let args = format!("    arg multicast=239.1.2.3:5007\n    arg udp={HOST}:9001\n    arg tcp={HOST}:9000\n");
    let client = format!(
        "
service client
    program /bin/net_client
    priority 10
    restart never
    endpoint net
{args}"
    );
    let mut running = boot_on_tap(&ns, "net-client.cpio", &manifest(&static_address(), &client));
    wait_for(&mut running, "net_client: joined 239.1.2.3:5007");
    // The host sends to the group until Tutti has it.
    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let sender = ns
        .run_inside(move || -> Result<(), String> {
            let socket = UdpSocket::bind(SocketAddrV4::new(HOST, 0)).map_err(|e| e.to_string())?;
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) && start.elapsed() < WAIT {
                socket.send_to(b"hello, group", "239.1.2.3:5007").map_err(|e| format!("multicast send: {e}"))?;
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        })
        .expect("a host thread in the namespace");
    wait_for(&mut running, "net_client: udp reply \"hello from the host\" from 10.99.0.1:9001");
    wait_for(&mut running, "net_client: tcp sent 262144 bytes, received 262144 bytes, pattern ok: true");
    wait_for(&mut running, "net_client: multicast \"hello, group\" from 10.99.0.1:");
    wait_for(&mut running, "net_client: ok");
    done.store(true, Ordering::Relaxed);
    let run = running.stop();
    let (datagram, from) = udp.join().expect("udp thread").expect("the UDP exchange");
    assert_eq!(datagram, b"hello from tutti");
    assert_eq!(from, std::net::SocketAddr::from(SocketAddrV4::new(GUEST, 5000)));
    let got = tcp.join().expect("tcp thread").expect("the TCP exchange");
    assert!(got == pattern(TCP_BYTES, 0x11), "Tutti's 256 KiB arrived intact");
    sender.join().expect("multicast thread").expect("the multicast sender");
    assert!(run.crash().is_none(), "{}", run.report("the kernel crashed"));
}

/// QEMU's user networking (no root needed): its DHCP server gives 10.0.2.15, and the host
/// reaches the echo service through a forwarded port.
#[test]
fn net_dhcp_over_user_networking_gets_an_address_and_the_host_reaches_tutti() {
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("its address").port()
    };
    let machine = tutti("")
        .initrd(archive_with_manifest("net-dhcp.cpio", Some(&manifest("    arg dhcp\n", ECHO))))
        .memory("16M")
        .deadline(Duration::from_secs(120))
        .arg("-netdev")
        .arg(&format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:7"))
        .arg("-device")
        .arg("virtio-net-pci,netdev=n0");
    let mut running = machine.spawn().expect("QEMU starts");
    wait_for(&mut running, "[INFO] net: address 10.0.2.15/24, gateway 10.0.2.2 (DHCP)");
    wait_for(&mut running, "net_echo: listening on 10.0.2.15:7");
    let data = pattern(64 * 1024, 0x33);
    let result = (|| -> Result<Vec<u8>, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
        stream.write_all(&data).map_err(|e| e.to_string())?;
        stream.shutdown(std::net::Shutdown::Write).map_err(|e| e.to_string())?;
        let mut back = Vec::new();
        stream.read_to_end(&mut back).map_err(|e| e.to_string())?;
        Ok(back)
    })();
    match result {
        Ok(back) => assert!(back == data, "{}", running.report("the echo through the forwarded port differs")),
        Err(e) => panic!("{}", running.report(&format!("the echo through the forwarded port failed: {e}"))),
    }
    let run = running.stop();
    assert!(run.crash().is_none(), "{}", run.report("the kernel crashed"));
}

/// A small deterministic generator for the random frames.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Thousands of malformed frames of every kind the service checks for.
fn hostile_frames(count: usize) -> Vec<Vec<u8>> {
    const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut frames = Vec::with_capacity(count);
    for i in 0..count {
        let len = 14 + (rng.next() % 1500) as usize;
        let mut frame = rng.bytes(len);
        // Sent from a made-up station (the kernel would drop frames with its own source).
        frame[6..12].copy_from_slice(&[0x02, 0x00, 0x00, 0xba, 0xd0, i as u8]);
        match i % 6 {
            0 => {}                                      // entirely random: mostly for another station, some multicast
            1 => frame[..6].copy_from_slice(&GUEST_MAC), // random ethertype
            2 | 3 => {
                // IPv4 with a random header (bad version, lengths, checksum)
                frame[..6].copy_from_slice(&GUEST_MAC);
                frame[12..14].copy_from_slice(&[0x08, 0x00]);
                if i % 6 == 3 && frame.len() >= 34 {
                    // a plausible header for the guest with a random TCP/UDP/ICMP body
                    frame[14] = 0x45;
                    let total = (frame.len() - 14) as u16;
                    frame[16..18].copy_from_slice(&total.to_be_bytes());
                    frame[20..22].copy_from_slice(&[0, 0]);
                    frame[23] = [6u8, 17, 1][i % 3];
                    frame[26..30].copy_from_slice(&HOST.octets());
                    frame[30..34].copy_from_slice(&GUEST.octets());
                    frame[24..26].copy_from_slice(&[0, 0]);
                    let sum = ipv4_checksum(&frame[14..34]);
                    frame[24..26].copy_from_slice(&sum.to_be_bytes());
                }
            }
            4 => {
                // ARP of random content, some truncated
                frame[..6].copy_from_slice(&[0xff; 6]);
                frame[12..14].copy_from_slice(&[0x08, 0x06]);
                frame.truncate(14 + (rng.next() % 40) as usize);
            }
            _ => {
                // runts and near-runts for the guest
                frame[..6].copy_from_slice(&GUEST_MAC);
                frame[12..14].copy_from_slice(&[0x08, 0x00]);
                frame.truncate(14 + (rng.next() % 20) as usize);
            }
        }
        frames.push(frame);
    }
    frames
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn net_thousands_of_malformed_frames_are_dropped_with_reports_and_tcp_still_works() {
    const FRAMES: usize = 5000;
    let ns = namespace("frames");
    let mut running = boot_on_tap(&ns, "net-frames.cpio", &manifest(&static_address(), ECHO));
    wait_for(&mut running, "net_echo: listening on 10.99.0.2:7");
    let sent = ns
        .run_inside(|| -> Result<usize, String> {
            let socket = RawSocket::open(TAP).map_err(|e| e.to_string())?;
            let mut sent = 0;
            for (i, frame) in hostile_frames(FRAMES).iter().enumerate() {
                match socket.send(frame) {
                    Ok(()) => sent += 1,
                    // The tap's queue is full while QEMU catches up: give it a moment.
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
                // Paced: the guest takes frames from a 16-entry queue; beyond what QEMU
                // buffers, the tap would drop them before they reach Tutti.
                if i % 4 == 3 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Ok(sent)
        })
        .expect("a host thread in the namespace")
        .join()
        .expect("the frame sender")
        .expect("sending frames");
    assert!(sent > FRAMES * 9 / 10, "only {sent} of {FRAMES} frames were sent");
    // TCP still works after the flood.
    let data = pattern(256 * 1024, 0x42);
    match echo_from_host(&ns, data.clone()) {
        Ok((back, _)) => assert!(back == data, "{}", running.report("the echo after the flood differs")),
        Err(e) => panic!("{}", running.report(&format!("the echo after the flood failed: {e}"))),
    }
    wait_for(&mut running, "net_echo: echoed 262144 bytes to 10.99.0.1:");
    wait_for(&mut running, "[WARN] net: dropped a malformed frame");
    // A summary counts (nearly) every frame: a few random ones may pass as well-formed, and a
    // few may be lost in the tap's queue on a loaded machine.
    let dropped = |running: &Running| {
        running
            .lines()
            .iter()
            .filter_map(|l| {
                l.text.split("dropped ").nth(1)?.split(" malformed frames so far").next()?.parse::<usize>().ok()
            })
            .max()
            .unwrap_or(0)
    };
    let start = Instant::now();
    while dropped(&running) < sent * 8 / 10 && start.elapsed() < WAIT {
        let _ = running.wait_for("\u{0}never printed", Duration::from_millis(500));
    }
    let counted = dropped(&running);
    assert!(
        counted >= sent * 8 / 10,
        "{}",
        running.report(&format!("only {counted} of {sent} bad frames were counted"))
    );
    let run = running.stop();
    assert!(run.crash().is_none(), "{}", run.report("the kernel crashed"));
    assert!(!run.printed("init: service"), "{}", run.report("a service ended"));
    assert!(!run.printed("panicked"), "{}", run.report("a task panicked"));
    let summary = run.lines.iter().rev().find(|l| l.text.contains("malformed frames so far")).expect("a summary");
    eprintln!("{}", summary.text);
}
