//! Property tests of every codec: encode then decode gives back the value, and arbitrary
//! bytes never make a decoder panic (the oracles of [`crate::fuzz`]).

use alloc::string::String;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::identity::DeviceId;

fn device_id() -> impl Strategy<Value = DeviceId> {
    any::<[u8; 16]>().prop_map(DeviceId::from_bytes)
}

fn name(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(".{0,20}")
        .unwrap_or_else(|_| unreachable!())
        .prop_filter("fits the length byte", move |s| s.len() <= max)
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

proptest! {
    #[test]
    fn beacon_round_trips(id in device_id(), kind in any::<u8>(), caps in any::<u16>(), port in any::<u16>(),
                          name in name(discovery::MAX_NAME_LEN)) {
        let b = Beacon { device_id: id, kind: DeviceKind::from_byte(kind), capabilities: CapabilitySet(caps),
                         session_port: port, name: &name };
        let bytes = encode_to_vec(&b).unwrap();
        prop_assert_eq!(decode_datagram(&bytes), Ok(Datagram::Beacon(b)));
    }

    #[test]
    fn query_round_trips(id in device_id(), caps in any::<u16>()) {
        let q = Query { device_id: id, wanted: CapabilitySet(caps) };
        let bytes = encode_to_vec(&q).unwrap();
        prop_assert_eq!(decode_datagram(&bytes), Ok(Datagram::Query(q)));
    }

    #[test]
    fn handshake_round_trips(sid in any::<u64>(), step in 1u8..=3, msg in bytes(300)) {
        let h = Handshake { session_id: sid, step, message: &msg };
        let bytes = encode_to_vec(&h).unwrap();
        prop_assert_eq!(decode_datagram(&bytes), Ok(Datagram::Handshake(h)));
    }

    #[test]
    fn record_round_trips(sid in any::<u64>(), counter in any::<u64>(), ct in proptest::collection::vec(any::<u8>(), 16..300)) {
        let r = Record { session_id: sid, counter, ciphertext: &ct };
        let bytes = encode_to_vec(&r).unwrap();
        prop_assert_eq!(decode_prefix(&bytes), Ok((Datagram::Record(r), bytes.len())));
    }

    #[test]
    fn channel_messages_round_trip(id in any::<u64>(), n in any::<u32>(), fin in any::<bool>(), code in any::<u16>(),
                                   text in name(channel::MAX_NAME_LEN), payload in bytes(100)) {
        let msgs = [
            ChannelMessage::RpcRequest { request_id: id, deadline_ms: n, method: &text, payload: &payload },
            ChannelMessage::RpcResponse { request_id: id, payload: &payload },
            ChannelMessage::RpcError { request_id: id, code: RpcErrorCode(code), message: &text },
            ChannelMessage::RpcCancel { request_id: id },
            ChannelMessage::Subscribe { topic: &text },
            ChannelMessage::Unsubscribe { topic: &text },
            ChannelMessage::Publish { seq: id, topic: &text, payload: &payload },
            ChannelMessage::PublishAck { seq: id, topic: &text },
            ChannelMessage::StreamData { stream_id: n, offset: id, fin, data: &payload },
            ChannelMessage::WindowUpdate { stream_id: n, max_offset: id },
            ChannelMessage::Keepalive { token: id, reply: fin },
        ];
        let bytes = encode_messages(&msgs).unwrap();
        let back: Result<Vec<_>, _> = messages(&bytes).collect();
        prop_assert_eq!(back.unwrap(), msgs.to_vec());
    }

    #[test]
    fn arbitrary_datagrams_never_panic(data in bytes(200)) {
        crate::fuzz::datagram(&data);
        crate::fuzz::stream(&data);
    }

    #[test]
    fn arbitrary_headers_with_valid_prefix_never_panic(t in any::<u8>(), len in any::<u16>(), data in bytes(200)) {
        let mut v = Vec::from(frame::MAGIC);
        v.extend_from_slice(&[frame::VERSION, t, 0, 0]);
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(&data);
        crate::fuzz::datagram(&v);
        crate::fuzz::stream(&v);
    }

    #[test]
    fn arbitrary_channel_plaintexts_never_panic(data in bytes(200)) {
        crate::fuzz::channel(&data);
    }

    #[test]
    fn arbitrary_keystores_never_panic(data in bytes(120)) {
        crate::fuzz::keystore(&data);
    }
}
