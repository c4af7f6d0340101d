//! The file-system service (docs/fs.md): `fs_test` runs as a service with `endpoint fs` and
//! exercises the client API (`svc::fs::Fs`) on tmpfs, the boot archive and ext2 on a
//! virtio-blk disk. The host prepares ext2 images with `mke2fs -d` and checks them afterwards
//! with `e2fsck -fn` and `debugfs`; durability is checked by killing QEMU hard after an fsync
//! and booting again; corrupt images and hostile requests must give errors, never a crash.

use abi::exit::ExitCode;
use harness::Run;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use systests::{archive_with_manifest, tutti};

/// The manifest: names, fs (with the PCI ports, the PCI memory window, the clock and the
/// boot archive) and `fs_test <mode>`.
fn manifest(mode: &str) -> String {
    manifest_for("fs_test", mode, 10, "")
}

/// The manifest with `program` as the test service at `priority`, with extra manifest lines.
fn manifest_for(program: &str, mode: &str, priority: u8, extra: &str) -> String {
    format!(
        "\
service names
    program /bin/svc_names
    priority 40
    restart always

service fs
    program /bin/svc_fs
    priority 30
    quota 2M
    restart always
    ports 0xcf8-0xcff
    ports 0x70-0x71
    device-memory 0xfe000000 0xc00000
    boot-archive

service test
    program /bin/{program}
    priority {priority}
    quota 4M
    restart never
    endpoint fs
    arg {mode}
    shutdown-on-exit
{extra}"
    )
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(std::env::var_os("TUTTI_SCRATCH").expect("run with cargo xtask test")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A 16 MiB ext2 image made by the host from a directory with `hello.txt`, `sub/big`
/// (200000 bytes, `i % 251`) and `remove-me`.
fn image(name: &str) -> PathBuf {
    let dir = scratch_dir(name);
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("hello.txt"), b"hello from the host\n").unwrap();
    std::fs::write(src.join("sub/big"), (0..200_000usize).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
    std::fs::write(src.join("remove-me"), b"bye\n").unwrap();
    let img = dir.join("disk.img");
    let out = Command::new("mke2fs")
        .args(["-q", "-t", "ext2", "-d"])
        .arg(&src)
        .arg("-F")
        .arg(&img)
        .arg("16M")
        .output()
        .expect("mke2fs (e2fsprogs) is installed");
    assert!(out.status.success(), "mke2fs: {}", String::from_utf8_lossy(&out.stderr));
    img
}

fn boot(name: &str, mode: &str, disk: Option<&Path>) -> harness::Machine {
    boot_with(name, &manifest(mode), disk)
}

fn boot_with(name: &str, manifest: &str, disk: Option<&Path>) -> harness::Machine {
    let mut machine = tutti("").initrd(archive_with_manifest(&format!("{name}.cpio"), Some(manifest)));
    if let Some(disk) = disk {
        let drive = format!("file={},if=none,id=d0,format=raw", disk.display());
        machine = machine.arg("-drive").arg(&drive).arg("-device").arg("virtio-blk-pci,drive=d0");
    }
    machine
}

fn assert_ok(run: &Run) {
    run.assert_exit(ExitCode::Success).assert_printed("fs_test: ok");
    assert!(!run.printed("WRONG"), "{}", run.report("a check failed"));
    assert!(!run.printed("init: service fs"), "{}", run.report("the file service ended"));
}

fn e2fsck(img: &Path) -> (bool, String) {
    let out = Command::new("e2fsck").arg("-fn").arg(img).output().expect("e2fsck");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn debugfs(img: &Path, request: &str) -> Vec<u8> {
    let out = Command::new("debugfs").arg("-R").arg(request).arg(img).output().expect("debugfs");
    out.stdout
}

#[test]
fn fs_tmpfs_and_the_boot_archive_in_16_mib() {
    let run = boot("fs-tree", "tree", None).memory("16M").run().unwrap();
    assert_ok(&run);
    run.assert_printed("[INFO] fs: mounted tmpfs at / (256 KiB)")
        .assert_printed("[INFO] fs: mounted the boot archive at /boot read-only")
        .assert_printed("fs: /disk not mounted: no virtio-blk disk")
        .assert_printed("fs_test: write in /boot refused: ok")
        .assert_printed("fs_test: tmpfs quota: ok");
}

#[test]
fn fs_hostile_requests_get_errors_and_the_server_serves_on() {
    let run = boot("fs-hostile", "hostile", None).run().unwrap();
    assert_ok(&run);
    run.assert_printed("fs_test: open files are bounded: ok").assert_printed("fs_test: still serving: ok");
}

#[test]
fn fs_ext2_on_virtio_blk_reads_host_files_and_the_host_reads_the_guests() {
    let img = image("fs-ext2");
    let run = boot("fs-ext2", "ext2", Some(&img)).run().unwrap();
    assert_ok(&run);
    run.assert_printed("[INFO] fs: mounted ext2 at /disk").assert_printed("fs_test: host's big file: ok");
    let (clean, report) = e2fsck(&img);
    assert!(clean, "e2fsck -fn after the guest's changes:\n{report}");
    assert_eq!(debugfs(&img, "cat /made-by-tutti/renamed.txt"), b"written by tutti\n");
    let guest = debugfs(&img, "cat /guest.bin");
    let expected: Vec<u8> = (0..12_345u32).map(|i| (i * 7 % 256) as u8).collect();
    assert_eq!(guest.len(), expected.len(), "guest.bin truncated to 12345 bytes");
    assert!(guest == expected, "guest.bin holds what the guest wrote");
    let listing = String::from_utf8_lossy(&debugfs(&img, "ls -l /")).to_string();
    assert!(!listing.contains("remove-me"), "the unlinked file is gone:\n{listing}");
    assert!(listing.contains("link"), "the symbolic link is there:\n{listing}");
    let link = String::from_utf8_lossy(&debugfs(&img, "stat /link")).to_string();
    assert!(link.contains("Fast link dest: \"made-by-tutti/renamed.txt\""), "{link}");
}

#[test]
fn fs_fsynced_data_survives_a_hard_kill_of_qemu() {
    let img = image("fs-durable");
    let mut running = boot("fs-durable-1", "durable-write", Some(&img)).spawn().unwrap();
    let synced = running.wait_for("fs_test: durable.bin synced", Duration::from_secs(60));
    if synced.is_none() {
        panic!("{}", running.report("the guest never synced durable.bin"));
    }
    // Let it write (unsynced) other files for a moment, then pull the plug.
    std::thread::sleep(Duration::from_millis(300));
    let first = running.stop();
    assert_eq!(first.ending, harness::Ending::Killed, "{}", first.report("QEMU was killed"));

    // The host sees the synced file whole, whatever state the rest is in.
    let data = debugfs(&img, "cat /durable.bin");
    assert!(
        data.len() == 300_000 && data.iter().enumerate().all(|(i, &x)| x == (i * 13 % 253) as u8 ^ 0x5a),
        "durable.bin as the host reads it after the kill ({} bytes)",
        data.len()
    );
    let (clean, report) = e2fsck(&img);
    println!("e2fsck -fn after the hard kill: clean {clean}\n{report}");

    // The guest reads it back after booting again.
    let second = boot("fs-durable-2", "durable-check", Some(&img)).run().unwrap();
    assert_ok(&second);
    second.assert_printed("fs_test: durable.bin intact after the hard reset: ok");
}

/// Overwrites `len` bytes at `offset` of `img` with pseudo-random bytes.
fn scribble(img: &Path, offset: u64, len: usize) {
    let mut bytes = std::fs::read(img).unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for b in &mut bytes[offset as usize..offset as usize + len] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(img, bytes).unwrap();
}

#[test]
fn fs_corrupt_superblock_leaves_disk_unmounted_with_a_reason() {
    let img = image("fs-corrupt-sb");
    scribble(&img, 1024, 1024);
    let before = std::fs::read(&img).unwrap();
    let run = boot("fs-corrupt-sb", "corrupt", Some(&img)).run().unwrap();
    assert_ok(&run);
    let line = run.find("fs: /disk not mounted: the disk (16384 KiB) does not mount as ext2").map(|l| l.text.clone());
    assert!(line.is_some(), "{}", run.report("a clear reason"));
    assert_eq!(std::fs::read(&img).unwrap(), before, "nothing was written to the disk");
}

/// Where the inode table of group 0 starts in `img`, and the inode size.
fn inode_table(img: &Path) -> (u64, u64) {
    let bytes = std::fs::read(img).unwrap();
    let block = 1024u64 << u32::from_le_bytes(bytes[1024 + 24..1024 + 28].try_into().unwrap());
    let inode_size = u16::from_le_bytes(bytes[1024 + 88..1024 + 90].try_into().unwrap()) as u64;
    // The first group descriptor follows the superblock's block.
    let descriptors = if block == 1024 { 2048 } else { block } as usize;
    let table = u32::from_le_bytes(bytes[descriptors + 8..descriptors + 12].try_into().unwrap()) as u64;
    (table * block, inode_size)
}

#[test]
fn fs_corrupt_root_inode_leaves_disk_unmounted_with_a_reason() {
    let img = image("fs-corrupt-root");
    let (table, inode_size) = inode_table(&img);
    scribble(&img, table + inode_size, inode_size as usize); // inode 2, the root
    let run = boot("fs-corrupt-root", "corrupt", Some(&img)).run().unwrap();
    assert_ok(&run);
    run.assert_printed("fs: /disk not mounted: the disk (16384 KiB) does not mount as ext2: corrupt: ");
}

#[test]
fn fs_corrupt_file_inodes_give_errors_and_nothing_else_breaks() {
    let img = image("fs-corrupt-inodes");
    let (table, inode_size) = inode_table(&img);
    scribble(&img, table + 11 * inode_size, 8 * inode_size as usize); // inodes 12-19: the host's files
    let run = boot("fs-corrupt-inodes", "corrupt", Some(&img)).run().unwrap();
    assert_ok(&run);
    for line in run.lines.iter().filter(|l| l.text.contains("fs")) {
        println!("{}", line.text);
    }
    run.assert_printed("[INFO] fs: mounted ext2 at /disk")
        .assert_printed("[WARN] fs: /disk: corrupt metadata: ")
        .assert_printed("sub/big Err(Corrupt)");
    let (clean, _) = e2fsck(&img);
    assert!(!clean, "e2fsck still sees the damage (nothing repaired behind its back)");
}

/// `fs_crash <mode>` as an `admin` service above fs (40), on a fresh image.
fn crash_run(name: &str, mode: &str) -> (Run, PathBuf) {
    let img = image(name);
    let run = boot_with(name, &manifest_for("fs_crash", mode, 40, "    admin\n"), Some(&img)).run().unwrap();
    for line in run.lines.iter().filter(|l| l.text.starts_with("init:") || l.text.contains("fs_crash: writer")) {
        println!("{}", line.text);
    }
    run.assert_exit(ExitCode::Success).assert_printed("fs_crash: ok");
    assert!(!run.printed("WRONG"), "{}", run.report("a check failed"));
    assert!(!run.printed("init: service test faulted"), "{}", run.report("the client faulted"));
    assert!(!run.printed("init: service names"), "{}", run.report("the name service ended"));
    assert!(!run.printed("init: service fs faulted"), "{}", run.report("fs faulted"));
    (run, img)
}

/// Byte `pos` of crash file `index` (as `fs_crash::content_byte`).
fn crash_byte(index: u32, pos: u32) -> u8 {
    ((pos.wrapping_mul(31).wrapping_add(index.wrapping_mul(17))) % 251) as u8 ^ index as u8
}

/// The files the guest reported fsync'ed: (index, length).
fn synced_files(run: &Run) -> Vec<(u32, u32)> {
    run.lines
        .iter()
        .filter_map(|l| l.text.strip_prefix("fs_crash: synced f"))
        .map(|rest| {
            let (i, len) = rest.split_once(' ').expect("index and length");
            (i.parse().unwrap(), len.trim().parse().unwrap())
        })
        .collect()
}

/// Every fsync'ed file, as `debugfs rdump` copies it out of `img`, holds what the guest wrote.
fn assert_synced_files_on_host(img: &Path, synced: &[(u32, u32)], what: &str) {
    let out = img.with_extension(format!("dump-{what}"));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let status = Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump /crash {}", out.display()))
        .arg(img)
        .output()
        .expect("debugfs");
    assert!(status.status.success(), "debugfs rdump: {}", String::from_utf8_lossy(&status.stderr));
    for &(index, len) in synced {
        let data = std::fs::read(out.join("crash").join(format!("f{index}"))).unwrap_or_default();
        let expected: Vec<u8> = (0..len).map(|p| crash_byte(index, p)).collect();
        assert!(data == expected, "{what}: f{index} ({} bytes, {len} expected) is intact", data.len());
    }
}

/// The host's checks after a crash test. Asserted: the guest fsync'ed at least 12 files, and
/// every one of them reads back whole from the image as the guest left it (`debugfs rdump`).
/// `e2fsck -fn` of that image is printed, not asserted: the machine stops without a last sync,
/// so files written after the last fsync may be half there. On a copy, `e2fsck -fy` must end
/// with status 0 or 1 (nothing found, or everything found repaired), the repaired copy must
/// then be clean under `e2fsck -fn`, and the fsync'ed files must still be whole in it (the
/// repair did not need to touch them).
fn check_crash_image(img: &Path, run: &Run) {
    let synced = synced_files(run);
    assert!(synced.len() >= 12, "{}", run.report("at least 12 fsync'ed files"));
    assert_synced_files_on_host(img, &synced, "as-left");
    let (clean, report) = e2fsck(img);
    println!("e2fsck -fn of the image as the guest left it: clean {clean}\n{report}");
    let copy = img.with_extension("repaired");
    std::fs::copy(img, &copy).unwrap();
    let fix = Command::new("e2fsck").arg("-fy").arg(&copy).output().expect("e2fsck");
    let code = fix.status.code().unwrap_or(-1);
    assert!(code == 0 || code == 1, "e2fsck -fy status {code}:\n{}", String::from_utf8_lossy(&fix.stdout));
    let (clean, report) = e2fsck(&copy);
    assert!(clean, "e2fsck -fn after the repair:\n{report}");
    assert_synced_files_on_host(&copy, &synced, "repaired");
}

#[test]
fn fs_crash_killed_between_requests_keeps_every_fsynced_file() {
    let (run, img) = crash_run("fs-crash-idle", "crash-idle");
    check_crash_image(&img, &run);
}

#[test]
fn fs_crash_killed_in_the_middle_of_writes_keeps_every_fsynced_file() {
    let (run, img) = crash_run("fs-crash-busy", "crash-busy");
    check_crash_image(&img, &run);
}

#[test]
fn fs_reconnect_after_kill_and_restart_stale_handles_and_lost_tmpfs() {
    let (run, _) = crash_run("fs-reconnect", "reconnect");
    run.assert_printed("fs_crash: old /disk handle is Stale: ok")
        .assert_printed("fs_crash: tmpfs content lost after Restart: ok")
        .assert_printed("init: service test touched a vanished shared buffer at 0x180000000000: mapped a zeroed page");
}
