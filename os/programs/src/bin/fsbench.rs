//! The storage benchmark's Tutti side (`cargo xtask bench storage`, docs/benchmarks.md): a
//! service with `endpoint fs` that runs, on `/disk` (ext2 on virtio-blk through `svc_fs`), the
//! same workload as tools/linuxbench/fsbench.c on Linux:
//!
//! - `seqwrite`: 8 MiB written to a new file in 64 KiB writes, then `fsync` (per MiB);
//! - `seqread`: the file read back in 64 KiB reads, every byte summed and checked (per MiB);
//! - `smallfiles`: 500 files of 1 KiB created and written, then all deleted (per file).
//!
//! Each figure is one `bench <name> iterations=<n> instructions=<tsc> per_op=<tsc / n>` line
//! (under `-icount shift=0` the TSC counts guest instructions) and one
//! `benchtime <name> ns=<guest clock>` line; `fsbench: error <what>` and status 1 on failure.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::vec;
use svc::fs::{flags, Error, Fs};

rt::entry!(main);

const SEQ_BYTES: usize = 8 << 20;
const CHUNK: usize = 64 * 1024;
const SMALL_FILES: usize = 500;
const SMALL_BYTES: usize = 1024;

/// Byte `i` of the big file (the Linux program writes the same).
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

fn report(name: &str, iterations: u64, tsc: u64, ns: u64) {
    rt::println!("bench {name} iterations={iterations} instructions={tsc} per_op={}", tsc / iterations);
    rt::println!("benchtime {name} ns={ns}");
}

/// Runs `f`, reporting its TSC and clock time under `name`.
fn measure(
    name: &'static str,
    iterations: u64,
    f: impl FnOnce() -> Result<(), Error>,
) -> Result<(), (&'static str, Error)> {
    let (tsc, ns) = (rt::rdtsc(), rt::sys::time_now());
    f().map_err(|e| (name, e))?;
    report(name, iterations, rt::rdtsc() - tsc, rt::sys::time_now() - ns);
    Ok(())
}

fn main() -> i32 {
    match run() {
        Ok(()) => svc::exit(0),
        Err((what, e)) => {
            rt::println!("fsbench: error {what}: {e:?}");
            svc::exit(1)
        }
    }
}

fn run() -> Result<(), (&'static str, Error)> {
    let fs = Fs::connect().map_err(|e| ("connect", e))?;
    let chunk: alloc::vec::Vec<u8> = (0..CHUNK).map(pattern).collect();
    let _ = fs.unlink("/disk/seq.bin");
    let _ = fs.mkdir("/disk/small", 0o755);

    measure("seqwrite", (SEQ_BYTES >> 20) as u64, || {
        let mut file = fs.open("/disk/seq.bin", flags::WRITE | flags::CREATE | flags::TRUNCATE, 0o644)?;
        for _ in 0..SEQ_BYTES / CHUNK {
            file.write(&chunk)?;
        }
        file.fsync()?;
        file.close()
    })?;

    measure("seqread", (SEQ_BYTES >> 20) as u64, || {
        let mut file = fs.open("/disk/seq.bin", flags::READ, 0)?;
        let mut buf = vec![0u8; CHUNK];
        let (mut total, mut sum, mut expected) = (0usize, 0u64, 0u64);
        while total < SEQ_BYTES {
            let mut filled = 0;
            while filled < CHUNK {
                let n = file.read(&mut buf[filled..])?;
                if n == 0 {
                    return Err(Error::Io);
                }
                filled += n;
            }
            sum += buf.iter().map(|&b| b as u64).sum::<u64>();
            expected += chunk.iter().map(|&b| b as u64).sum::<u64>();
            total += CHUNK;
        }
        file.close()?;
        if sum == expected {
            Ok(())
        } else {
            Err(Error::Corrupt)
        }
    })?;

    let small = vec![0x5au8; SMALL_BYTES];
    measure("smallfiles", SMALL_FILES as u64, || {
        for i in 0..SMALL_FILES {
            let mut file =
                fs.open(&format!("/disk/small/f{i}"), flags::WRITE | flags::CREATE | flags::TRUNCATE, 0o644)?;
            file.write(&small)?;
            file.close()?;
        }
        for i in 0..SMALL_FILES {
            fs.unlink(&format!("/disk/small/f{i}"))?;
        }
        Ok(())
    })?;
    Ok(())
}
