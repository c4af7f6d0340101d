//! The ceiling of an encrypted soft bus stream on this machine: MB/s of AES-256-GCM sealing
//! 64 KiB records and of SHA-256, each on one core, with the RustCrypto crates the soft bus
//! uses. Every byte of a stream is sealed on one side and opened on the other, and a file
//! transfer also hashes it on both, so no stream is faster. Printed as one JSON line for
//! `cargo xtask bench softbus` (run it with `--release`).

use aes_gcm::aead::{AeadInOut, KeyInit};
use sha2::Digest;
use std::time::Instant;

fn main() {
    let cipher = aes_gcm::Aes256Gcm::new(&[7u8; 32].into());
    let mut record = vec![1u8; 64 * 1024];
    let rounds = 2048u64;
    let t = Instant::now();
    for i in 0..rounds {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&i.to_be_bytes());
        let tag = cipher.encrypt_inout_detached(&aes_gcm::Nonce::from(nonce), b"", (&mut record[..]).into());
        std::hint::black_box(tag.ok());
    }
    let aes = (rounds as f64 * record.len() as f64) / 1e6 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut hash = sha2::Sha256::new();
    for _ in 0..rounds {
        hash.update(&record);
    }
    std::hint::black_box(hash.finalize());
    let sha = (rounds as f64 * record.len() as f64) / 1e6 / t.elapsed().as_secs_f64();
    println!("{{\"aes_256_gcm_mb_s\": {aes:.1}, \"sha256_mb_s\": {sha:.1}}}");
}
