//! Crash consistency: after a sync, later changes are recorded write by write; the image a
//! crash would leave after any prefix of those writes must still hold the synced data.

mod common;

use common::*;
use ext2fs::{BlockDevice, DeviceError, Fs, ROOT};

/// A device that logs every write.
struct Recorder {
    disk: MemDevice,
    log: Vec<(u64, Vec<u8>)>,
}

impl BlockDevice for Recorder {
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.disk.read(offset, buf)
    }
    fn write(&mut self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        self.log.push((offset, buf.to_vec()));
        self.disk.write(offset, buf)
    }
    fn flush(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
    fn size(&self) -> u64 {
        self.disk.size()
    }
}

fn content(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|k| (k * 31 + i * 7) as u8).collect()
}

#[test]
fn synced_data_survives_a_crash_at_every_write() {
    for bs in [1024u32, 4096] {
        let sizes = [100usize, 5000, 70_000, 300_000];
        // The synced state: files that stay, and victims that are changed afterwards.
        let mut fs = Fs::mount_with_cache(MemDevice { data: fresh(bs, 128, 2048) }, false, 8).unwrap();
        fs.set_clock(1_700_000_000);
        let keep = fs.mkdir(ROOT, b"keep", 0o755).unwrap();
        let victims = fs.mkdir(ROOT, b"victims", 0o755).unwrap();
        for (i, &len) in sizes.iter().enumerate() {
            let f = fs.create(keep, format!("k{i}").as_bytes(), 0o644).unwrap();
            fs.write(f, 0, &content(i, len)).unwrap();
            let v = fs.create(victims, format!("v{i}").as_bytes(), 0o644).unwrap();
            fs.write(v, 0, &content(i + 10, len)).unwrap();
        }
        fs.sync().unwrap();
        let synced = fs.into_device().data;
        assert_clean(&synced);

        // Changes after the sync: remove and truncate victims, then write new files that
        // would love to reuse the freed space.
        let mut fs =
            Fs::mount_with_cache(Recorder { disk: MemDevice { data: synced.clone() }, log: Vec::new() }, false, 8)
                .unwrap();
        fs.set_clock(1_700_000_100);
        for i in 0..sizes.len() {
            let name = format!("v{i}");
            if i % 2 == 0 {
                fs.unlink(victims, name.as_bytes()).unwrap();
            } else {
                let v = fs.lookup(victims, name.as_bytes()).unwrap();
                fs.truncate(v, 10).unwrap();
            }
        }
        fs.rename(ROOT, b"victims", keep, b"moved").unwrap();
        for i in 0..6 {
            let f = fs.create(ROOT, format!("new{i}").as_bytes(), 0o644).unwrap();
            fs.write(f, 0, &vec![0xEE; 150_000]).unwrap();
        }
        fs.sync().unwrap();
        let log = fs.into_device().log;
        assert!(log.len() > 20, "too few writes to test: {}", log.len());

        for cut in 0..=log.len() {
            let mut image = synced.clone();
            for (offset, data) in &log[..cut] {
                image[*offset as usize..*offset as usize + data.len()].copy_from_slice(data);
            }
            let mut fs = Fs::mount(MemDevice { data: image.clone() }, true).unwrap();
            for (i, &len) in sizes.iter().enumerate() {
                let f = resolve(&mut fs, &format!("keep/k{i}")).unwrap();
                assert_eq!(read_all(&mut fs, f), content(i, len), "block size {bs}, crash after {cut} writes");
                // A victim still reachable with its old size still has its old data.
                for path in [format!("victims/v{i}"), format!("keep/moved/v{i}")] {
                    if let Ok(v) = resolve(&mut fs, &path) {
                        if fs.stat(v).unwrap().size == len as u64 {
                            // Truncated victims (odd) may have their tail zeroed in place
                            // already; nothing else may have touched the old data.
                            let got = read_all(&mut fs, v);
                            let old = content(i + 10, len);
                            let intact = got
                                .iter()
                                .zip(&old)
                                .enumerate()
                                .all(|(k, (g, o))| g == o || (i % 2 == 1 && k >= 10 && *g == 0));
                            assert!(intact, "{path} damaged after {cut} writes");
                        }
                    }
                }
            }
            if cut % 7 == 0 || cut == log.len() {
                let (code, text) = fsck_output(&image);
                assert!(!text.contains("ultiply-claimed"), "blocks reused after {cut} writes:\n{text}");
                if cut == log.len() {
                    assert_eq!(code, 0, "{text}");
                }
            }
        }
    }
}
