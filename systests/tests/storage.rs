//! User-space PCI and virtio-blk (docs/drivers.md): the PCI enumerator service lists the bus
//! with only the configuration ports; `blk_test` (as init) drives a virtio-blk disk attached
//! to QEMU, polled, with DMA memory from a contiguous memory object. The host prepares the
//! image and afterwards finds the guest's writes in the file.

use abi::exit::ExitCode;
use std::path::PathBuf;
use systests::{archive_with_manifest, scratch_file, tutti};

const SECTOR: usize = 512;
/// Sector 0 as the host writes it (blk_test checks the same pattern).
fn host_sector() -> Vec<u8> {
    let mut s: Vec<u8> = (0..SECTOR).map(|i| (i as u8).wrapping_mul(7).wrapping_add(3)).collect();
    s[..16].copy_from_slice(b"TUTTI DISK TEST\n");
    s
}

/// A 4 MiB raw image with the host's sector 0 and zeros elsewhere.
fn image(name: &str) -> PathBuf {
    let mut bytes = vec![0u8; 4 << 20];
    bytes[..SECTOR].copy_from_slice(&host_sector());
    scratch_file(name, &bytes)
}

/// Boots blk_test with the image attached as `device` and checks the console and the file.
fn read_write_and_find_it_on_the_host(name: &str, device: &str) {
    let disk = image(name);
    let drive = format!("file={},if=none,id=d0,format=raw", disk.display());
    let run = tutti("init=/bin/blk_test").arg("-drive").arg(&drive).arg("-device").arg(device).run().unwrap();
    run.assert_exit(ExitCode::Success)
        .assert_printed("blk_test: sector 0 holds the host's pattern: true")
        .assert_printed("blk_test: sector 1 written and read back: true; sectors 16-23 (DMA buffer): true")
        .assert_printed("the device says Err(Virtio(IoError))")
        .assert_printed("blk_test: read 1024 KiB in 16 requests")
        .assert_printed("blk_test: ok");
    assert!(run.printed("8192 sectors, read-only false"), "{}", run.report("the capacity of a 4 MiB image"));

    // Durability of a real write: QEMU has exited, the sectors are in the file.
    let bytes = std::fs::read(&disk).unwrap();
    assert_eq!(bytes.len(), 4 << 20, "the image keeps its size");
    assert_eq!(&bytes[..SECTOR], &host_sector()[..], "sector 0 is untouched");
    let one = &bytes[SECTOR..2 * SECTOR];
    assert_eq!(&one[..16], b"WRITTEN BY TUTTI");
    assert!(one.iter().enumerate().skip(16).all(|(i, &b)| b == i as u8 ^ 0x5a), "sector 1 as the guest wrote it");
    let many = &bytes[16 * SECTOR..24 * SECTOR];
    assert!(
        many.iter().enumerate().all(|(i, &b)| b == ((i * 31 + 17) % 251) as u8),
        "sectors 16-23 as the guest wrote them"
    );
    assert!(bytes[2 * SECTOR..16 * SECTOR].iter().all(|&b| b == 0), "nothing else was written");
    assert!(bytes[24 * SECTOR..].iter().all(|&b| b == 0), "nothing else was written");
}

#[test]
fn virtio_blk_transitional_reads_writes_and_the_host_sees_the_writes() {
    read_write_and_find_it_on_the_host("blk-transitional.img", "virtio-blk-pci,drive=d0");
}

#[test]
fn virtio_blk_modern_only_reads_writes_and_the_host_sees_the_writes() {
    read_write_and_find_it_on_the_host("blk-modern.img", "virtio-blk-pci,drive=d0,disable-legacy=on");
}

#[test]
fn without_a_disk_the_driver_reports_no_device() {
    let run = tutti("init=/bin/blk_test").run().unwrap();
    run.assert_exit(ExitCode::InitFailed).assert_printed("blk_test: FAILED: virtio-blk: NoDevice");
    assert!(run.crash().is_none());
}

#[test]
fn the_pci_service_lists_the_bus_with_only_the_configuration_ports() {
    let manifest = "\
service pci
    program /bin/svc_pci
    priority 20
    restart never
    ports 0xcf8-0xcff
    shutdown-on-exit
";
    let disk = image("pci-list.img");
    let drive = format!("file={},if=none,id=d0,format=raw", disk.display());
    let run = tutti("")
        .initrd(archive_with_manifest("pci.cpio", Some(manifest)))
        .arg("-drive")
        .arg(&drive)
        .arg("-device")
        .arg("virtio-blk-pci,drive=d0,addr=5")
        .run()
        .unwrap();
    run.assert_exit(ExitCode::Success)
        .assert_printed("pci: 00:00.0 8086:1237 class 06.00.00 (host bridge)")
        .assert_printed("pci: 00:01.1 8086:7010 class 01.01")
        // QEMU's standard VGA: a 16 MiB prefetchable framebuffer BAR (the devices test uses it)
        .assert_printed("pci: 00:02.0   bar0 mem 0xfd000000+0x1000000 prefetchable")
        .assert_printed("pci: 00:05.0 1af4:1001 class 01.00.00 (SCSI storage)")
        // transitional virtio: legacy I/O BAR of 128 ports, modern registers in a 64-bit BAR
        .assert_printed("pci: 00:05.0   bar0 io ")
        .assert_printed("+0x4000 64-bit prefetchable")
        .assert_printed("pci: 7 functions");
    let blk = run.find("pci: 00:05.0 1af4:1001").expect("the disk is listed");
    assert!(blk.text.contains("pin INTA"), "{}", run.report("the interrupt pin"));
}
