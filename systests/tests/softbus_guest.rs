//! The soft bus inside Tutti (docs/softbus/tutti.md): a Tutti guest running `softbusd` and a
//! real `tuttid` on the host meet on one L2 segment (a network namespace with the guest's tap)
//! by multicast discovery, pair with a code the guest shows, and call each other over the
//! encrypted session: the host shows text on the guest's console (`display.show`) and runs
//! its compute service, the guest's shell calls the host's (`bus call`). The guest's identity
//! and trust survive a reboot (they are on its ext2 disk); an unpaired daemon is refused.
//! Needs root (network namespaces) like the other tap tests.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::net::{Namespace, TAP};
use harness::Running;
use systests::linux::disk;
use systests::softbus::{binaries, show_code, type_and_wait, Daemon, HELLO_SHA256};

const HOST: &str = "10.99.0.1";
const GUEST: &str = "10.99.0.2";
const WAIT: Duration = Duration::from_secs(60);

/// The default manifest with a static address on the tap's subnet and the soft bus named
/// `guest`.
fn manifest() -> String {
    let default = systests::manifest();
    assert!(default.contains("    arg dhcp\n") && default.contains("service softbus\n"));
    default
        .replace("    arg dhcp\n", &format!("    arg address={GUEST}/24\n    arg gateway={HOST}\n"))
        .replace("    program /bin/softbusd\n", "    program /bin/softbusd\n    arg name=guest\n")
}

fn boot(ns: &Namespace, disk: &Path) -> Running {
    let name =
        format!("{}.cpio", disk.parent().and_then(|d| d.file_name()).and_then(|n| n.to_str()).unwrap_or("softbus"));
    let archive = systests::archive_with_manifest(&name, Some(&manifest()));
    let drive = format!("file={},if=none,id=d0,format=raw", disk.display());
    systests::tutti("")
        .initrd(archive)
        .memory("64M")
        .deadline(Duration::from_secs(240))
        .in_namespace(ns.name())
        .arg("-drive")
        .arg(&drive)
        .arg("-device")
        .arg("virtio-blk-pci,drive=d0")
        .arg("-netdev")
        .arg(&format!("tap,id=n0,ifname={TAP},script=no,downscript=no"))
        .arg("-device")
        .arg("virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56")
        .spawn()
        .expect("QEMU starts")
}

/// The guest's device id, from the soft bus server's start line.
#[track_caller]
fn started(guest: &mut Running) -> (String, String) {
    let Some(line) = guest.wait_for("softbus: guest (", WAIT) else {
        panic!("{}", guest.report("the soft bus server did not start"));
    };
    let text = line.text.clone();
    let id = text.split('(').nth(1).and_then(|s| s.split(')').next()).unwrap_or_default().to_string();
    (id, text)
}

/// Waits for the guest's permission prompt for the host's display call.
#[track_caller]
fn wait_for_prompt(guest: &mut Running) {
    if guest.wait_for("asks to use display (display.show)", WAIT).is_none() {
        panic!("{}", guest.report("no permission prompt on the guest's console"));
    }
}

/// Pairs `host` with the guest: the guest shows a code, the host types it.
#[track_caller]
fn pair(guest: &mut Running, host: &Daemon, guest_id: &str) {
    let code = show_code(guest);
    let paired = host.ok(&["pair", "guest", "--code", &code]);
    assert!(paired.contains(guest_id), "{paired}");
    if guest.wait_for("softbus: paired with host", WAIT).is_none() {
        panic!("{}", guest.report("the guest did not report the pairing"));
    }
}

#[test]
fn a_tutti_guest_and_a_host_daemon_discover_pair_and_call_each_other() {
    let ns = Namespace::create("sbus", &format!("{HOST}/24")).expect("network namespace (needs root)");
    // Multicast leaves through the tap (the namespace has no default route).
    ns.ip(&["route", "add", "224.0.0.0/4", "dev", TAP]).expect("multicast route");
    let bins = binaries();
    let scratch =
        PathBuf::from(std::env::var_os("TUTTI_SCRATCH").expect("run with cargo xtask test")).join("softbus-guest");
    let disk = disk("softbus-guest", &[]);

    let mut guest = boot(&ns, &disk);
    let (guest_id, line) = started(&mut guest);
    assert!(line.contains("new identity, 0 trusted device(s), state in /disk/softbus"), "{line}");

    let host = Daemon::start(&ns, "host", 47801, &scratch.join("host"), &bins);
    host.wait_device("guest", &mut guest);
    // Standard DNS-SD tools see the host daemon: an mDNS browser (the mdns-sd crate, as
    // avahi-browse would) in the namespace resolves `_tutti._udp` to it.
    let status: String = host.ok(&["status"]);
    let browsed = ns
        .run_inside(|| -> Option<(String, String)> {
            let daemon = mdns_sd::ServiceDaemon::new().ok()?;
            let events = daemon.browse("_tutti._udp.local.").ok()?;
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut found = None;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match events.recv_timeout(left) {
                    Ok(mdns_sd::ServiceEvent::ServiceResolved(info)) => {
                        let id = info.get_property_val_str("id").unwrap_or_default().to_string();
                        found = Some((info.get_fullname().to_string(), id));
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = daemon.shutdown();
            found
        })
        .expect("enter the namespace")
        .join()
        .expect("the browser thread");
    let Some((fullname, id)) = browsed else { panic!("no _tutti._udp service was resolved by mDNS") };
    assert_eq!(fullname, "host._tutti._udp.local.");
    assert!(status.contains(&id) && !id.is_empty(), "the TXT id {id:?} is not the host's: {status}");
    // Calls before pairing are refused by both sides.
    let refused = host.tutti(&["call", "guest", "compute.sha256", "\"hello\""]);
    assert!(!refused.status.success(), "an untrusted host was served");

    // Pairing: the guest shows a code, the host types it.
    pair(&mut guest, &host, &guest_id);

    // The host uses the guest's display and compute.
    host.ok(&["call", "guest", "display.show", "\"hello from the host\\u001b[2J\""]);
    if guest.wait_for("[host] hello from the host\\u{1b}[2J", WAIT).is_none() {
        panic!("{}", guest.report("the guest's console did not show the text (escaped)"));
    }
    let hashed = host.ok(&["call", "guest", "compute.sha256", "\"hello\""]);
    assert!(hashed.contains(HELLO_SHA256), "{hashed}");
    let caps = host.ok(&["caps", "guest"]);
    assert!(caps.contains("display") && caps.contains("compute"), "{caps}");
    // A file from the host: received, checked by SHA-256, kept on the guest's disk; sent again,
    // it gets a new name; refused once the policy denies storage.
    let file = scratch.join("notes.txt");
    let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&file, &text).unwrap();
    host.ok(&["send", "guest", file.to_str().unwrap()]);
    let line = format!("softbus: received /disk/received/notes.txt ({} bytes) from host", text.len());
    if guest.wait_for(&line, WAIT).is_none() {
        panic!("{}", guest.report("the guest did not receive the file"));
    }
    host.ok(&["send", "guest", file.to_str().unwrap()]);
    if guest.wait_for("softbus: received /disk/received/notes (1).txt", WAIT).is_none() {
        panic!("{}", guest.report("the second copy overwrote the first or was lost"));
    }
    type_and_wait(&mut guest, "stat /disk/received/notes.txt", &format!("size {}", text.len()));
    type_and_wait(&mut guest, "bus policy set host storage deny", "host: storage deny until changed");
    let refused = host.tutti(&["send", "guest", file.to_str().unwrap()]);
    assert!(!refused.status.success(), "a denied file was taken");
    type_and_wait(&mut guest, "bus policy remove host storage", "host: no rule for storage");
    // `ask` for files: the offer waits for the answer on the guest's console.
    type_and_wait(&mut guest, "bus policy set host storage ask", "host: storage ask until changed");
    std::thread::scope(|scope| {
        let sending = scope.spawn(|| host.tutti(&["send", "guest", file.to_str().unwrap()]));
        if guest.wait_for("asks to use storage (storage.receive notes.txt", WAIT).is_none() {
            panic!("{}", guest.report("no prompt for the file"));
        }
        type_and_wait(&mut guest, "bus allow host storage", "allowed host to use storage this time");
        let out = sending.join().unwrap();
        assert!(out.status.success(), "the allowed file failed: {}", String::from_utf8_lossy(&out.stderr));
    });
    if guest.wait_for("softbus: received /disk/received/notes (2).txt", WAIT).is_none() {
        panic!("{}", guest.report("the allowed file was not kept"));
    }
    type_and_wait(&mut guest, "bus policy remove host storage", "host: no rule for storage; the default");

    let missing = host.tutti(&["call", "guest", "nope.nope", "null"]);
    assert!(!missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("no method"));

    // Permissions: the guest asks its own console first, then a time-limited refusal, then the
    // rule revoked.
    type_and_wait(&mut guest, "bus policy set host display ask", "host: display ask until changed");
    std::thread::scope(|scope| {
        let asked = scope.spawn(|| host.tutti(&["call", "guest", "display.show", "\"after asking\""]));
        wait_for_prompt(&mut guest);
        type_and_wait(&mut guest, "bus allow host display", "allowed host to use display this time");
        let out = asked.join().unwrap();
        assert!(out.status.success(), "the allowed call failed: {}", String::from_utf8_lossy(&out.stderr));
    });
    if guest.wait_for("[host] after asking", WAIT).is_none() {
        panic!("{}", guest.report("the allowed call was not shown"));
    }
    type_and_wait(&mut guest, "bus deny host display 60", "host: display deny for 60 s");
    let denied = host.tutti(&["call", "guest", "display.show", "\"never shown\""]);
    let stderr = String::from_utf8_lossy(&denied.stderr).into_owned();
    assert!(!denied.status.success() && stderr.contains("permission denied"), "{stderr}");
    type_and_wait(&mut guest, "bus policy", "host             display    deny   for ");
    type_and_wait(
        &mut guest,
        "bus policy remove host display",
        "host: no rule for display; the default (allow) applies",
    );
    host.ok(&["call", "guest", "display.show", "\"allowed again\""]);
    if guest.wait_for("[host] allowed again", WAIT).is_none()
        || guest.lines().iter().any(|l| l.text.contains("never shown"))
    {
        panic!("{}", guest.report("the policy was not applied as set"));
    }

    // The guest uses the host's compute service.
    assert!(guest.type_text("bus devices\n"));
    let trusted_row = |l: &str| l.contains(" host ") && l.contains(" yes ") && l.contains(HOST);
    if guest.wait_until(trusted_row, WAIT).is_none() {
        panic!("{}", guest.report("`bus devices` did not list the host as discovered and trusted"));
    }
    let answer =
        type_and_wait(&mut guest, r#"bus call host compute.transform '{"op":"upper","text":"tutti"}'"#, "TUTTI");
    assert!(answer.contains(r#"{"text":"TUTTI"}"#), "{answer}");
    type_and_wait(&mut guest, "bus caps host", "compute algorithms=sha256");

    // An unpaired daemon is refused.
    let stranger = Daemon::start(&ns, "stranger", 0, &scratch.join("stranger"), &bins);
    stranger.wait_device("guest", &mut guest);
    let out = stranger.tutti(&["call", "guest", "compute.sha256", "\"hello\""]);
    assert!(!out.status.success(), "the unpaired daemon was served: {}", String::from_utf8_lossy(&out.stdout));
    type_and_wait(&mut guest, "bus call stranger echo.echo 1", "not trusted by this device");
    drop(stranger);

    // Reboot: the same identity and trust come back from the disk.
    assert!(guest.type_text("sync\necho synced\n"));
    // (The prompt comes before the output on the line.)
    if guest.wait_until(|l| l.trim_end().ends_with("synced") && !l.contains("echo"), WAIT).is_none() {
        panic!("{}", guest.report("sync did not finish"));
    }
    drop(guest.stop());
    let mut guest = boot(&ns, &disk);
    let (again, line) = started(&mut guest);
    assert_eq!(again, guest_id, "the guest's identity changed across a reboot");
    assert!(line.contains("stored identity, 1 trusted device(s)"), "{line}");
    host.wait_device("guest", &mut guest);
    let deadline = Instant::now() + WAIT;
    loop {
        let out = host.tutti(&["call", "guest", "compute.sha256", "\"hello\""]);
        if out.status.success() {
            assert!(String::from_utf8_lossy(&out.stdout).contains(HELLO_SHA256));
            break;
        }
        assert!(Instant::now() < deadline, "no call after the reboot: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(guest.stop());
}

/// A namespace with the guest's tap and multicast routed to it.
fn namespace(tag: &str) -> Namespace {
    let ns = Namespace::create(tag, &format!("{HOST}/24")).expect("network namespace (needs root)");
    ns.ip(&["route", "add", "224.0.0.0/4", "dev", TAP]).expect("multicast route");
    ns
}

#[test]
fn a_guest_survives_beacon_floods_garbage_and_silent_peers() {
    let ns = namespace("sbflood");
    let bins = binaries();
    let scratch =
        PathBuf::from(std::env::var_os("TUTTI_SCRATCH").expect("run with cargo xtask test")).join("softbus-flood");
    let disk = disk("softbus-flood", &[]);
    let mut guest = boot(&ns, &disk);
    let (guest_id, _) = started(&mut guest);
    let host = Daemon::start(&ns, "host", 47801, &scratch.join("host"), &bins);
    host.wait_device("guest", &mut guest);
    pair(&mut guest, &host, &guest_id);

    // From the host side: 10,000 beacons of fake devices and 500 garbage datagrams at the
    // discovery port; garbage, a frame header announcing 64 KiB that never come, and silent
    // connections at the session port.
    let flood = ns
        .run_inside(|| {
            use std::io::Write as _;
            let udp = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            let to = format!("{GUEST}:47800");
            for n in 0..10_000u32 {
                let mut key = [0u8; 32];
                key[..4].copy_from_slice(&n.to_le_bytes());
                let beacon = softbus::wire::Beacon {
                    device_id: softbus::identity::DeviceId::from_signing_public(&key),
                    kind: softbus::wire::DeviceKind::Phone,
                    capabilities: softbus::wire::CapabilitySet::DISPLAY,
                    session_port: 1,
                    name: "fake",
                };
                let _ = udp.send_to(&softbus::wire::encode_to_vec(&beacon).unwrap(), &to);
                if n % 200 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            let mut garbage = |len: usize| -> Vec<u8> {
                (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect()
            };
            for n in 0..500 {
                let _ = udp.send_to(&garbage(1 + n % 1400), &to);
            }
            let session = format!("{GUEST}:47801");
            let mut held = Vec::new();
            for n in 0..12 {
                let Ok(mut c) = std::net::TcpStream::connect(&session) else { continue };
                match n % 3 {
                    0 => drop(c.write_all(&garbage(4096))),
                    // Four bytes that may begin a frame, then nothing.
                    1 => drop(c.write_all(&[1, 3, 0xff, 0xff])),
                    _ => {}
                }
                held.push(c);
            }
            held
        })
        .expect("enter the namespace");
    let held = flood.join().expect("the flood thread");

    // The paired host is still served (the silent connections are dropped by their deadline).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = host.tutti(&["call", "guest", "compute.sha256", "\"hello\""]);
        if out.status.success() {
            assert!(String::from_utf8_lossy(&out.stdout).contains(HELLO_SHA256));
            break;
        }
        assert!(Instant::now() < deadline, "{}", guest.report("the host was never served after the flood"));
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(held);
    assert!(guest.type_text("services\n"));
    let Some(row) = guest.wait_until(|l| l.starts_with("softbus ") && l.contains("running"), WAIT) else {
        panic!("{}", guest.report("softbus is not running after the flood"));
    };
    assert!(row.text.split_whitespace().nth(2) == Some("0"), "softbus was restarted: {}", row.text);
    assert!(guest.type_text("bus devices\n"));
    let Some(_) = guest.wait_until(|l| l.contains(" host ") && l.contains(" yes "), WAIT) else {
        panic!("{}", guest.report("the host is no longer listed as trusted"));
    };
    let rows = guest.lines().iter().filter(|l| l.text.contains(" fake ")).count();
    assert!(rows <= 256, "the device table grew to {rows} fake devices");
    drop(guest.stop());
}
