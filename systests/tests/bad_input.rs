//! A badly started machine gets a clear message and the BadConfig exit status, never a crash
//! or a hang: unknown options, bad values, a missing or corrupt boot archive, too little memory.

use abi::exit::ExitCode;
use harness::Machine;
use systests::{kernel, scratch_file, tutti, DEADLINE};

fn refused(machine: Machine, message: &str) {
    let run = machine.run().unwrap();
    run.assert_exit(ExitCode::BadConfig).assert_printed(message);
    assert!(run.crash().is_none(), "{}", run.report("a refusal must not be a crash"));
    assert!(!run.printed(abi::console::READY), "{}", run.report("refused, yet ready"));
}

#[test]
fn unknown_option() {
    refused(
        tutti("on_ready=exit frobnicate=yes"),
        "error: kernel command line: unknown kernel command-line option `frobnicate` (known options: log crash on_ready init)",
    );
}

#[test]
fn bad_option_values() {
    refused(tutti("log=loud"), "option `log` does not accept `loud` (allowed: error warn info debug trace)");
    refused(tutti("crash"), "option `crash` needs a value");
    refused(tutti("log=info log=debug"), "option `log` is given more than once");
}

#[test]
fn missing_boot_archive() {
    refused(
        Machine::new(kernel()).append("on_ready=exit").deadline(DEADLINE),
        "error: boot archive: no boot archive: start QEMU with -initrd",
    );
}

#[test]
fn random_bytes_as_boot_archive() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let path = scratch_file("random.cpio", &bytes);
    refused(
        tutti("on_ready=exit").initrd(path),
        "error: boot archive: the boot archive is corrupt: no cpio newc magic (070701) at offset 0",
    );
}

#[test]
fn truncated_boot_archive() {
    let mut writer = newc::Writer::new();
    writer.dir("etc", 0o755).file("etc/data", 0o644, &[7; 5000]);
    let mut bytes = writer.finish();
    bytes.truncate(3000);
    let path = scratch_file("truncated.cpio", &bytes);
    refused(tutti("on_ready=exit").initrd(path), "the boot archive is corrupt: entry at offset 116 runs past the end");
}

#[test]
fn tar_instead_of_cpio() {
    let mut tar = vec![0u8; 1024];
    tar[..8].copy_from_slice(b"etc/motd");
    tar[257..262].copy_from_slice(b"ustar");
    let path = scratch_file("archive.tar", &tar);
    refused(tutti("on_ready=exit").initrd(path), "not a cpio newc archive");
}

#[test]
fn too_little_memory() {
    // Room for the kernel and the boot archive and a little more, but not the 2 MiB Tutti needs
    // beyond them. Less and QEMU cannot even load them (the machine dies before the kernel
    // runs: the archive goes at the top of memory and must not reach the kernel, its data and
    // its stack above 1 MiB); `cargo xtask run` refuses such sizes itself.
    let len = |p: std::path::PathBuf| std::fs::metadata(p).expect("the image").len();
    let mib = (len(systests::archive()) + len(kernel())).div_ceil(1 << 20) + 2;
    refused(tutti("on_ready=exit").memory(&format!("{mib}M")), "error: memory: not enough memory: ");
}

#[test]
fn small_memory_still_boots() {
    // The boot archive (every native program, 3.6 MiB with the Linux personality and the soft
    // bus server) takes some of it: 8 MiB leaves room to spare.
    for mem in ["8M", "9M"] {
        tutti("on_ready=exit").memory(mem).run().unwrap().assert_exit(ExitCode::Success);
    }
}
