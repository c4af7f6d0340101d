//! Decoder entry points for fuzzing, shared by the cargo-fuzz targets in `softbus/fuzz/` and
//! by plain `#[test]`s that run a deterministic pseudo-random corpus (so CI exercises every
//! decoder without a nightly toolchain).
//!
//! Design: each entry point feeds arbitrary bytes to one decoder and, when decoding
//! succeeds, checks the strongest oracle available: re-encoding the decoded value gives back
//! the input bytes exactly (every layout is canonical). A failed oracle panics, which is
//! what a fuzzer reports; the decoders themselves must never panic. This module exists only
//! in tests and with the `fuzzing` feature.

use crate::identity::Identity;
use crate::wire::{self, Datagram};

/// Decodes `data` as one datagram; a decoded frame must re-encode to `data`.
pub fn datagram(data: &[u8]) {
    let Ok(decoded) = wire::decode_datagram(data) else { return };
    let encoded = match decoded {
        Datagram::Beacon(b) => wire::encode_to_vec(&b),
        Datagram::Query(q) => wire::encode_to_vec(&q),
        Datagram::Handshake(h) => wire::encode_to_vec(&h),
        Datagram::Record(r) => wire::encode_to_vec(&r),
    };
    assert_eq!(encoded.as_deref(), Ok(data), "re-encoding {decoded:?} differs");
}

/// Decodes `data` as a byte stream of frames, as a TCP reader would.
pub fn stream(mut data: &[u8]) {
    while let Ok((_, used)) = wire::decode_prefix(data) {
        assert!(used > 0 && used <= data.len(), "frame length {used} out of range");
        data = data.get(used..).unwrap_or(&[]);
    }
}

/// Decodes `data` as the channel messages of a record's plaintext; the decoded prefix must
/// re-encode to the same bytes.
pub fn channel(data: &[u8]) {
    let mut decoded = alloc::vec::Vec::new();
    for m in wire::messages(data) {
        match m {
            Ok(m) => decoded.push(m),
            Err(_) => break,
        }
    }
    let encoded = wire::encode_messages(&decoded).map_err(|e| alloc::format!("{e}"));
    let Ok(encoded) = encoded else { panic!("re-encoding failed: {encoded:?}") };
    assert!(data.starts_with(&encoded), "re-encoding {decoded:?} differs");
}

/// Decodes `data` as a key store; a decoded identity must re-encode to `data`.
pub fn keystore(data: &[u8]) {
    if let Ok(identity) = Identity::from_keystore_bytes(data) {
        assert_eq!(&identity.to_keystore_bytes()[..], data);
    }
}

#[cfg(test)]
mod tests {
    //! The deterministic corpus: random bytes, and valid encodings that are truncated,
    //! extended and bit-flipped, from a fixed seed.

    use alloc::vec::Vec;

    use crate::identity::{DeviceId, Identity};
    use crate::rng::SeededRng;
    use crate::wire::{self, Beacon, CapabilitySet, ChannelMessage, DeviceKind, Handshake, Query, Record};

    /// A xorshift generator: enough to spread a corpus, and reproducible.
    struct Corpus(u64);

    impl Corpus {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }

        /// A variant of one of `seeds`, or plain random bytes.
        fn input(&mut self, seeds: &[Vec<u8>]) -> Vec<u8> {
            let mut v = match self.below(4) {
                0 => (0..self.below(80)).map(|_| self.next() as u8).collect(),
                _ => seeds[self.below(seeds.len())].clone(),
            };
            for _ in 0..self.below(4) {
                match self.below(4) {
                    0 if !v.is_empty() => {
                        let i = self.below(v.len());
                        v[i] ^= 1 << self.below(8);
                    }
                    1 => v.truncate(self.below(v.len() + 1)),
                    2 => v.push(self.next() as u8),
                    _ if !v.is_empty() => {
                        let i = self.below(v.len());
                        v[i] = self.next() as u8;
                    }
                    _ => {}
                }
            }
            v
        }
    }

    const ITERATIONS: usize = 20_000;

    fn run(seeds: &[Vec<u8>], target: fn(&[u8])) {
        let mut corpus = Corpus(0x5eed_f00d_1234_5678);
        for _ in 0..ITERATIONS {
            target(&corpus.input(seeds));
        }
    }

    fn datagram_seeds() -> Vec<Vec<u8>> {
        let id = DeviceId::from_bytes([0xab; 16]);
        let beacon = Beacon {
            device_id: id,
            kind: DeviceKind::Phone,
            capabilities: CapabilitySet::CAMERA,
            session_port: 7,
            name: "phone",
        };
        [
            wire::encode_to_vec(&beacon),
            wire::encode_to_vec(&Query { device_id: id, wanted: CapabilitySet::NONE }),
            wire::encode_to_vec(&Handshake { session_id: 3, step: 1, message: &[1; 32] }),
            wire::encode_to_vec(&Record { session_id: 3, counter: 9, ciphertext: &[2; 24] }),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    #[test]
    fn datagram_decoder_survives_the_corpus() {
        run(&datagram_seeds(), super::datagram);
    }

    #[test]
    fn stream_decoder_survives_the_corpus() {
        let joined: Vec<u8> = datagram_seeds().concat();
        run(&[joined], super::stream);
    }

    #[test]
    fn channel_decoder_survives_the_corpus() {
        let msgs = [
            ChannelMessage::RpcRequest { request_id: 1, deadline_ms: 5, method: "a.b", payload: b"x" },
            ChannelMessage::RpcError { request_id: 1, code: wire::RpcErrorCode::INTERNAL, message: "e" },
            ChannelMessage::Publish { seq: 1, topic: "t", payload: b"p" },
            ChannelMessage::StreamData { stream_id: 1, offset: 0, fin: true, data: b"d" },
            ChannelMessage::Keepalive { token: 1, reply: false },
        ];
        let seeds: Vec<Vec<u8>> = msgs.iter().filter_map(|m| wire::encode_messages(&[*m]).ok()).collect();
        run(&seeds, super::channel);
    }

    #[test]
    fn keystore_decoder_survives_the_corpus() {
        let ks = Identity::generate(&mut SeededRng::from_seed([9; 32])).to_keystore_bytes().to_vec();
        let mut corpus = Corpus(42);
        // Key store decoding checks a hash first, so fewer iterations suffice.
        for _ in 0..ITERATIONS / 10 {
            super::keystore(&corpus.input(core::slice::from_ref(&ks)));
        }
        super::keystore(&ks);
    }
}
