//! Several Tutti devices and a Linux host as one device network (docs/softbus/tutti.md): two
//! guests and a host `tuttid` on one bridge in a network namespace (as `cargo xtask run --nodes
//! 2 --host` sets it up). All three discover each other; guest A pairs with guest B (B shows
//! the code) and the host with A; A shows text on B's console (through the soft bus server's
//! local API, and as `display@node1` looked up in the name service); the host runs compute on A; B is
//! killed and A's calls fail within the deadline, then work again once B is back with the same
//! identity from its disk; an unpaired fourth device is refused. Needs root like the other
//! namespace tests.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::net::{node_manifest, Namespace, NODE_HOST};
use harness::Running;
use systests::linux::disk;
use systests::softbus::{binaries, show_code, type_and_wait, wait, Daemon, HELLO_SHA256};

const WAIT: Duration = Duration::from_secs(60);

/// What busybox does in B's shared directory through A's `/remote/node1`.
const REMOTE_SCRIPT: &str = "set -e
mkdir /remote/node1/bb
echo piped through busybox | tr a-z A-Z > /remote/node1/bb/up.txt
cat /remote/node1/bb/up.txt
wc -c < /remote/node1/bb/up.txt
ls -l /remote/node1/bb
mv /remote/node1/bb/up.txt /remote/node1/bb/moved.txt
rm /remote/node1/from-a.txt
echo busybox done
";

/// Guest `i` of the segment: its own archive (static address, soft bus name `node<i>`) and disk.
fn boot(ns: &Namespace, i: usize, disk: &Path) -> Running {
    // Room for busybox in the Linux personality (its default quota fits small programs).
    let base = systests::manifest().replace(
        "program /bin/linuxd\n    priority 25\n    quota 3M",
        "program /bin/linuxd\n    priority 25\n    quota 8M",
    );
    let manifest = node_manifest(&base, i).expect("the default manifest has net and softbus");
    let archive = systests::archive_with_manifest(&format!("softbus-node{i}.cpio"), Some(&manifest));
    ns.node(systests::tutti("").initrd(archive).memory("64M"), i, disk)
        .deadline(Duration::from_secs(300))
        .spawn()
        .expect("QEMU starts")
}

#[test]
fn two_guests_and_a_host_form_one_device_network() {
    let ns = Namespace::create_bridge("nodes", &format!("{NODE_HOST}/24"), 2).expect("network namespace (needs root)");
    let bins = binaries();
    let scratch =
        PathBuf::from(std::env::var_os("TUTTI_SCRATCH").expect("run with cargo xtask test")).join("softbus-nodes");
    let busybox = harness::linux::find_busybox().expect("the static busybox (busybox-static) is installed");
    let busybox = std::fs::read(busybox).expect("reading busybox");
    let busybox_b = busybox.clone();
    let (disk_a, disk_b) = (
        disk("softbus-node0", &[("busybox", busybox), ("remote.sh", REMOTE_SCRIPT.as_bytes().to_vec())]),
        disk("softbus-node1", &[("busybox", busybox_b)]),
    );
    let start = Instant::now();
    let mut a = boot(&ns, 0, &disk_a);
    let mut b = boot(&ns, 1, &disk_b);
    let host = Daemon::start(&ns, "host", 47801, &scratch.join("host"), &bins);

    // Discovery: every device sees the other two.
    wait(&mut a, "softbus: node0 (");
    wait(&mut b, "softbus: node1 (");
    wait(&mut a, "found node1");
    wait(&mut a, "found host");
    wait(&mut b, "found node0");
    wait(&mut b, "found host");
    let deadline = Instant::now() + WAIT;
    while !(host.devices().contains("\"name\":\"node0\"") && host.devices().contains("\"name\":\"node1\"")) {
        assert!(Instant::now() < deadline, "the host never discovered both guests: {}", host.devices());
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("all three discovered each other {:.1} s after the guests started", start.elapsed().as_secs_f64());

    // Pairing: A with B (B shows the code), the host with A (A shows the code).
    let code = show_code(&mut b);
    type_and_wait(&mut a, &format!("bus pair node1 {code}"), "paired with node1 (");
    wait(&mut b, "softbus: paired with node0");
    let code = show_code(&mut a);
    host.ok(&["pair", "node0", "--code", &code]);
    wait(&mut a, "softbus: paired with host");

    // A shows text on B's display; the host runs compute on A.
    type_and_wait(&mut a, r#"bus call node1 display.show '"hello from node0"'"#, r#"{"chars":16,"shown":true}"#);
    wait(&mut b, "[node0] hello from node0");
    // The same through the name service: `display@node1` is an endpoint like a local service's.
    type_and_wait(&mut a, r#"bus remote display@node1 show '"via the name service"'"#, r#"{"chars":20,"shown":true}"#);
    wait(&mut b, "[node0] via the name service");
    type_and_wait(&mut a, r#"bus remote compute@node1 transform '{"op":"reverse","text":"abc"}'"#, r#"{"text":"cba"}"#);
    // A file from guest to guest, checked by the receiver.
    assert!(a.type_text("write /disk/hello.txt a file from node0\n"));
    type_and_wait(&mut a, "bus send node1 /disk/hello.txt", "sent hello.txt to node1");
    wait(&mut b, "softbus: received /disk/received/hello.txt (18 bytes) from node0");
    type_and_wait(&mut b, "cat /disk/received/hello.txt", "a file from node0");
    // A reads and writes B's shared directory (`storage.*`), also through the name service;
    // nothing outside it.
    type_and_wait(
        &mut a,
        r#"bus call node1 storage.put '{"path":"notes.txt","content":"written by node0"}'"#,
        r#"{"bytes":16,"path":"notes.txt"}"#,
    );
    // (The content has no newline: the next command's echo ends the line.)
    type_and_wait(&mut b, "cat /disk/shared/notes.txt\necho", "written by node0");
    type_and_wait(&mut a, r#"bus remote storage@node1 get '{"path":"notes.txt"}'"#, r#""content":"written by node0""#);
    type_and_wait(&mut a, "bus remote storage@node1 list", r#""name":"notes.txt""#);
    type_and_wait(
        &mut a,
        r#"bus call node1 storage.get '{"path":"../softbus/identity.key"}'"#,
        "is not a relative path of plain names",
    );
    // B's shared directory is mounted at /remote/node1 (docs/fs.md, "Remote mounts"): plain
    // file operations of the native shell and of a Linux program (busybox) reach it.
    assert!(b.type_text("write /disk/shared/from-b.txt text made on node1\n"));
    type_and_wait(&mut a, "ls -l /remote", &format!("drwxr-xr-x {:>10} node1", 0));
    type_and_wait(&mut a, "ls -l /remote/node1", "from-b.txt");
    type_and_wait(&mut a, "cat /remote/node1/from-b.txt", "text made on node1");
    assert!(a.type_text("cp /remote/node1/from-b.txt /disk/copy.txt\n"));
    type_and_wait(&mut a, "wc /disk/copy.txt", "1 lines, 19 bytes: /disk/copy.txt");
    assert!(a.type_text("write /remote/node1/from-a.txt native write from node0\n"));
    type_and_wait(&mut a, "ls -l /remote/node1", &format!("{:>10} from-a.txt", 24));
    type_and_wait(&mut b, "cat /disk/shared/from-a.txt", "native write from node0");
    let started = Instant::now();
    assert!(a.type_text("linux /disk/busybox sh /disk/remote.sh\n"));
    wait(&mut a, "PIPED THROUGH BUSYBOX");
    wait(&mut a, "busybox done");
    println!("the busybox script on /remote/node1 took {:.1} s", started.elapsed().as_secs_f64());
    type_and_wait(&mut b, "cat /disk/shared/bb/moved.txt", "PIPED THROUGH BUSYBOX");
    type_and_wait(&mut b, "cat /disk/shared/from-a.txt", "from-a.txt: no such file or directory");
    type_and_wait(&mut a, "cat /remote/nowhere/x", "/remote/nowhere/x: no such file or directory");
    // A device's directory is not a file, not removable, and not renamed across mounts.
    type_and_wait(&mut a, "write /remote/node1 x", "/remote/node1: is a directory");
    type_and_wait(&mut a, "rm /remote/node1", "/remote/node1: busy (a mount point)");
    type_and_wait(&mut a, "mv /remote/node1/from-b.txt /disk/x", "/disk/x: across mounts");
    // The soft bus server restarts: the shell's file session with it is gone, and the next
    // operation on /remote attaches again by itself.
    type_and_wait(&mut a, "restart softbus", "restarted service softbus (restart 1)");
    let deadline = Instant::now() + WAIT;
    loop {
        let before = a.lines().iter().filter(|l| l.text.contains("text made on node1")).count();
        assert!(a.type_text("cat /remote/node1/from-b.txt\n"));
        let seen = std::cell::Cell::new(0);
        let again = |l: &str| {
            if l.contains("text made on node1") {
                seen.set(seen.get() + 1);
            }
            seen.get() > before
        };
        if a.wait_until(again, Duration::from_secs(10)).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "{}", a.report("/remote/node1 never worked again after softbus restarted"));
    }
    // A runs a program on B (`compute.run`): its output comes back while it runs, and its exit
    // status with the end.
    assert!(a.type_text("bus run node1 /disk/busybox sh -c 'echo out-$((0+1)); sleep 2; echo out-$((1+1)); exit 3'\n"));
    let first = wait(&mut a, "out-1");
    let second = wait(&mut a, "out-2");
    wait(&mut a, "/disk/busybox on node1: exit status 3");
    let at = |needle: &str| a.lines().iter().find(|l| l.text.contains(needle)).map(|l| l.at).expect("seen");
    let gap = at("out-2").saturating_sub(at("out-1"));
    println!("remote program: its second line came {:.1} s after the first ({first:?}, {second:?})", gap.as_secs_f64());
    assert!(gap >= Duration::from_millis(1500), "the output came all at once, {gap:?} apart");
    type_and_wait(&mut a, "bus run node1 /disk/nothing-here", "(ENOENT)");
    let hashed = host.ok(&["call", "node0", "compute.sha256", "\"hello\""]);
    assert!(hashed.contains(HELLO_SHA256), "{hashed}");
    // The host runs a program on A (`tutti run`): its output, and its exit status as tutti's.
    let ran = host.ok(&["run", "node0", "/disk/busybox", "sh", "-c", "echo ran on $(uname -n)"]);
    assert!(ran.contains("ran on "), "{ran}");
    let out = host.tutti(&["run", "node0", "/disk/busybox", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    // The host shares a directory (`tutti serve --storage`): A reads and writes it as
    // /remote/host.
    let shared = scratch.join("host-shared");
    let _ = std::fs::remove_dir_all(&shared);
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("from-host.txt"), "written on the host\n").unwrap();
    let serving = host.serve_storage(&shared);
    type_and_wait(&mut a, "cat /remote/host/from-host.txt", "written on the host");
    assert!(a.type_text("write /remote/host/from-a.txt to the host\n"));
    type_and_wait(&mut a, "ls -l /remote/host", &format!("{:>10} from-a.txt", 12));
    assert_eq!(std::fs::read_to_string(shared.join("from-a.txt")).unwrap(), "to the host\n");
    assert!(a.type_text("rm /remote/host/from-host.txt\n"));
    // The shell runs commands in order: once this answers, the removal is done.
    type_and_wait(&mut a, "wc /remote/host/from-a.txt", "1 lines, 12 bytes: /remote/host/from-a.txt");
    assert!(!shared.join("from-host.txt").exists(), "the host's file was not removed");
    drop(serving);

    // B dies: A's call fails (the deadline is 10 s), and works again once B is back.
    drop(b.stop());
    let failed_at = Instant::now();
    assert!(a.type_text("bus call node1 echo.echo 1\n"));
    // The shell's next error line (not the server's own `softbus: ` lines, not earlier ones).
    let error_line = |l: &str| l.contains("bus: ") && !l.contains("softbus: ");
    let before = a.lines().iter().filter(|l| error_line(&l.text)).count();
    let seen = std::cell::Cell::new(0);
    let failed = a.wait_until(
        |l| {
            if error_line(l) {
                seen.set(seen.get() + 1);
            }
            seen.get() > before
        },
        WAIT,
    );
    let took = failed_at.elapsed();
    let Some(failed) = failed else { panic!("{}", a.report("the call to the dead guest never failed")) };
    let reasons = ["no answer before the deadline", "session ended", "did not connect in time"];
    assert!(reasons.iter().any(|r| failed.text.contains(r)), "{}", failed.text);
    println!("a call to the dead guest failed after {:.1} s", took.as_secs_f64());
    assert!(took < Duration::from_secs(25), "the failure took {took:?}");
    let mut b = boot(&ns, 1, &disk_b);
    wait(&mut b, "1 trusted device(s)");
    // A opens the lost session again by itself, without a call.
    wait(&mut a, "session with node1 opened again");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let marker = format!("back{attempt}");
        assert!(a.type_text(&format!("bus call node1 echo.echo '\"{marker}\"'\n")));
        let answered =
            a.wait_until(|l| l.contains(&format!("\"{marker}\"")) && !l.contains("bus call"), Duration::from_secs(15));
        if answered.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "{}", a.report("calls to node1 never worked again after it came back"));
    }
    println!("calls to node1 work again after {attempt} attempt(s)");

    // An unpaired fourth device is refused everything, and refused by the guests.
    let stranger = Daemon::start(&ns, "stranger", 0, &scratch.join("stranger"), &bins);
    let deadline = Instant::now() + WAIT;
    while !stranger.devices().contains("\"name\":\"node0\"") {
        assert!(Instant::now() < deadline, "the stranger never discovered node0");
        std::thread::sleep(Duration::from_millis(200));
    }
    for method in ["compute.sha256", "compute.run", "display.show", "echo.echo", "caps.list", "storage.stat"] {
        let out = stranger.tutti(&["call", "node0", method, "\"x\""]);
        assert!(!out.status.success(), "the unpaired device was served {method}");
    }
    type_and_wait(&mut a, "bus call stranger echo.echo 1", "not trusted by this device");
    drop(stranger);
    drop(b.stop());
    drop(a.stop());
}
