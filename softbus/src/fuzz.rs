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
use crate::pairing::{Pairing, PairingCode};
use crate::rng::SeededRng;
use crate::trust::TrustStore;
use crate::wire::{self, Datagram};

/// Decodes `data` as one datagram; a decoded frame must re-encode to `data`.
pub fn datagram(data: &[u8]) {
    let Ok(decoded) = wire::decode_datagram(data) else { return };
    let encoded = match decoded {
        Datagram::Beacon(b) => wire::encode_to_vec(&b),
        Datagram::Query(q) => wire::encode_to_vec(&q),
        Datagram::Handshake(h) => wire::encode_to_vec(&h),
        Datagram::Record(r) => wire::encode_to_vec(&r),
        Datagram::Pairing(p) => wire::encode_to_vec(&p),
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

/// Feeds the channel messages decoded from `data` to every channel state machine a peer can
/// reach (RPC client and server, pub/sub, a stream receiver, a file sender and receiver):
/// they must refuse bad input with errors and keep their bounds, never panic.
pub fn channel_machines(data: &[u8]) {
    use crate::file::{FileOffer, FileReceiver, FileSender};
    use crate::pubsub::PubSub;
    use crate::rpc::{RpcClient, RpcServer};
    use crate::stream::StreamReceiver;
    use crate::time::Instant;

    let mut client = RpcClient::new(4);
    let mut server = RpcServer::new(4);
    let _ = client.call(Instant::ZERO, "a.b", b"", None);
    let mut pubsub = PubSub::default();
    let _ = pubsub.subscribe("t");
    let mut stream = StreamReceiver::new(1, 0);
    let offer = FileOffer { stream_id: 2, size: 100, sha256: [0; 32], name: alloc::string::String::from("f") };
    let mut sender = FileSender::new(offer.clone()).ok();
    let mut receiver = FileReceiver::accept(offer, 0, sha2::Sha256::default()).ok();
    for m in wire::messages(data) {
        let Ok(m) = m else { break };
        client.handle_message(&m);
        let _ = server.handle_message(&m);
        pubsub.handle_message(&m);
        let _ = stream.handle_message(&m);
        if let Some(s) = sender.as_mut() {
            let _ = s.handle_message(&m);
            let _ = s.write(&[0; 64]);
            while s.poll_transmit().is_some() {}
        }
        if let Some(r) = receiver.as_mut() {
            let _ = r.handle_message(&m);
            while r.poll_event().is_some() {}
        }
        let _ = stream.read(usize::MAX);
        pubsub.poll(Instant::from_millis(10_000));
        while pubsub.poll_transmit().is_some() {}
    }
}

/// Decodes `data` as a capability list; a decoded list must re-encode to `data`.
pub fn capabilities(data: &[u8]) {
    if let Ok(list) = crate::capability::decode_list(data) {
        assert_eq!(crate::capability::encode_list(&list).as_deref(), Ok(data), "re-encoding {list:?} differs");
    }
}

/// Decodes `data` as a key store; a decoded identity must re-encode to `data`.
pub fn keystore(data: &[u8]) {
    if let Ok(identity) = Identity::from_keystore_bytes(data) {
        assert_eq!(&identity.to_keystore_bytes()[..], data);
    }
}

/// Decodes `data` as a trust store; a decoded store must re-encode to `data`.
pub fn trust_store(data: &[u8]) {
    if let Ok(store) = TrustStore::from_bytes(data) {
        assert_eq!(store.to_bytes(), data);
    }
}

/// The methods of remote file access, by the first byte of a fuzz input.
const STORAGE_METHODS: [&str; 10] = crate::storage::method::ALL;

/// Decodes `data[1..]` as the payload of a remote file request (method by `data[0]`), which
/// must re-encode to the same bytes, and as the reply to a request of each kind.
pub fn storage(data: &[u8]) {
    use crate::storage::{decode_reply, encode_reply, Request};
    let Some((&first, payload)) = data.split_first() else { return };
    let method = STORAGE_METHODS[first as usize % STORAGE_METHODS.len()];
    if let Some(Ok(request)) = Request::decode(method, payload) {
        assert_eq!(request.encode(), payload, "re-encoding {request:?} differs");
    }
    let asked = [
        Request::Stat { path: "a" },
        Request::Read { path: "a", offset: 0, len: 64 },
        Request::Write { path: "a", offset: None, data: &[0; 64] },
        Request::ReadDir { path: "", start: 0 },
        Request::Mkdir { path: "a" },
    ];
    for request in &asked {
        if let Ok(reply) = decode_reply(request.asked(), data) {
            assert_eq!(encode_reply(&Ok(reply.clone())), data, "re-encoding {reply:?} differs");
        }
    }
}

/// Feeds `data` to a pairing responder (as the first frame) and to an initiator (as the
/// answer): both must refuse garbage with an error, never panic.
pub fn pairing(data: &[u8]) {
    let identity = Identity::from_secrets(&[1; 32], &[2; 32]);
    let mut rng = SeededRng::from_seed([3; 32]);
    let code = PairingCode::parse("123456").unwrap_or_else(|_| PairingCode::generate(&mut rng));
    let _ = Pairing::respond(&identity, "fuzz", &code, data, &mut rng);
    if let Ok(mut initiator) = Pairing::initiate(&identity, "fuzz", &code, &mut rng) {
        let _ = initiator.handle_frame(&identity, data);
    }
}

#[cfg(test)]
mod tests {
    //! The deterministic corpus: random bytes, and valid encodings that are truncated,
    //! extended and bit-flipped, from a fixed seed.

    use alloc::vec::Vec;

    use crate::identity::{DeviceId, Identity};
    use crate::rng::SeededRng;
    use crate::wire::{self, Beacon, CapabilitySet, ChannelMessage, DeviceKind, Handshake, Pairing, Query, Record};

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
            wire::encode_to_vec(&Pairing { pairing_id: 4, step: 2, payload: &[3; 40] }),
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
        run(&channel_seeds(), super::channel);
    }

    fn channel_seeds() -> Vec<Vec<u8>> {
        let msgs = [
            ChannelMessage::RpcRequest { request_id: 1, deadline_ms: 5, method: "a.b", payload: b"x" },
            ChannelMessage::RpcError { request_id: 1, code: wire::RpcErrorCode::INTERNAL, message: "e" },
            ChannelMessage::Subscribe { topic: "t" },
            ChannelMessage::Publish { seq: 1, topic: "t", payload: b"p" },
            ChannelMessage::PublishAck { seq: 1, topic: "t" },
            ChannelMessage::StreamData { stream_id: 1, offset: 0, fin: true, data: b"d" },
            ChannelMessage::StreamData { stream_id: 2, offset: 3, fin: false, data: b"dd" },
            ChannelMessage::WindowUpdate { stream_id: 2, max_offset: 1 << 20 },
            ChannelMessage::Keepalive { token: 1, reply: false },
            ChannelMessage::FileOffer { stream_id: 2, size: 100, sha256: [1; 32], name: "f" },
            ChannelMessage::FileAccept { stream_id: 2, offset: 7 },
            ChannelMessage::FileDone { stream_id: 2, status: wire::FileStatus::COMPLETE },
        ];
        let mut seeds: Vec<Vec<u8>> = msgs.iter().filter_map(|m| wire::encode_messages(&[*m]).ok()).collect();
        seeds.push(wire::encode_messages(&msgs).unwrap_or_default());
        seeds
    }

    #[test]
    fn channel_machines_survive_the_corpus() {
        let seeds = channel_seeds();
        let mut corpus = Corpus(0xc4a7);
        for _ in 0..ITERATIONS / 4 {
            super::channel_machines(&corpus.input(&seeds));
        }
    }

    #[test]
    fn capability_list_decoder_survives_the_corpus() {
        use crate::capability::{encode_list, Capability, CapabilityDescriptor};
        let list = [
            CapabilityDescriptor::new(Capability::Display).with("lines", "40"),
            CapabilityDescriptor::new(Capability::Custom("echo".into())).with("a", "1").with("b", "2"),
        ];
        let seeds: Vec<Vec<u8>> = [&list[..1], &list[..]].iter().filter_map(|l| encode_list(l).ok()).collect();
        run(&seeds, super::capabilities);
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

    #[test]
    fn trust_store_decoder_survives_the_corpus() {
        let mut store = crate::trust::TrustStore::new();
        for seed in 1..4u8 {
            let id = Identity::generate(&mut SeededRng::from_seed([seed; 32]));
            let device = crate::trust::TrustedDevice {
                device_id: id.device_id(),
                signing_public: id.signing_public(),
                noise_static: id.noise_public(),
                name: alloc::format!("device {seed}"),
                paired_at: u64::from(seed),
            };
            store.add(device).unwrap();
        }
        let bytes = store.to_bytes();
        let mut corpus = Corpus(7);
        for _ in 0..ITERATIONS / 10 {
            super::trust_store(&corpus.input(core::slice::from_ref(&bytes)));
        }
        super::trust_store(&bytes);
    }

    #[test]
    fn storage_decoders_survive_the_corpus() {
        use crate::storage::{encode_reply, Entry, FileKind, FileStat, Reply, Request};
        let requests = [
            Request::Stat { path: "a/b" },
            Request::Open { path: "f", flags: 5 },
            Request::Read { path: "f", offset: 9, len: 100 },
            Request::Write { path: "f", offset: Some(3), data: b"xyz" },
            Request::Write { path: "f", offset: None, data: b"" },
            Request::ReadDir { path: "", start: 2 },
            Request::Remove { path: "d", dir: true },
            Request::Rename { from: "a", to: "b/c" },
            Request::Truncate { path: "f", size: 4 },
        ];
        let mut seeds: Vec<Vec<u8>> = requests
            .iter()
            .map(|r| {
                let index = super::STORAGE_METHODS.iter().position(|m| *m == r.method()).unwrap_or(0) as u8;
                [&[index][..], &r.encode()].concat()
            })
            .collect();
        let stat = FileStat { kind: FileKind::Regular, size: 5, mtime: 6, mode: 0o644 };
        let entries = alloc::vec![Entry { name: "n".into(), kind: FileKind::Directory, size: 0 }];
        for reply in [Reply::Stat(stat), Reply::Data(b"ab".to_vec()), Reply::Written { len: 2, end: 9 }] {
            seeds.push(encode_reply(&Ok(reply)));
        }
        seeds.push(encode_reply(&Ok(Reply::Entries { entries, more: true })));
        run(&seeds, super::storage);
    }

    #[test]
    fn pairing_survives_the_corpus() {
        let identity = Identity::from_secrets(&[4; 32], &[5; 32]);
        let code = crate::pairing::PairingCode::parse("123456").unwrap();
        let mut rng = SeededRng::from_seed([6; 32]);
        let mut initiator = crate::pairing::Pairing::initiate(&identity, "seed", &code, &mut rng).unwrap();
        let step1 = initiator.poll_transmit().unwrap();
        let mut responder = crate::pairing::Pairing::respond(&identity, "seed", &code, &step1, &mut rng).unwrap();
        let step2 = responder.poll_transmit().unwrap();
        let mut corpus = Corpus(8);
        // Each input costs a few scalar multiplications.
        for _ in 0..ITERATIONS / 100 {
            super::pairing(&corpus.input(&[step1.clone(), step2.clone()]));
        }
    }
}
