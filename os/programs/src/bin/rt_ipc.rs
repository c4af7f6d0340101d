//! Test program (init): the typed IPC layer. Starts `rt_ipc_server` (a key-value store behind
//! `programs::kv::Kv`), uses it through `rt::ipc::Client` with two badged capabilities and a
//! shared buffer, then sends it hostile raw messages (unknown labels, invalid values, stray
//! capabilities, random words) that must get error replies while it keeps serving. Last, kernel
//! errors arrive typed: a call nobody takes times out, and a call to the killed server fails.
#![no_std]
#![no_main]

use abi::syscall::rights;
use programs::kv::{Kv, Request, Response};
use rt::ipc::{BufRange, Client, DecodeError, IpcError, Payload, SharedBuffer, REJECTED};
use rt::log::info;
use rt::spawn::{spawn, Spawn};
use rt::sys::{self, Message};

rt::entry!(main);

const TIMEOUT: u64 = 5_000_000_000;
const FUZZ: u64 = 2000;

fn call(kv: &Client<Kv>, request: Request) -> Response {
    match kv.call(&request, TIMEOUT) {
        Ok(response) => response,
        Err(e) => panic!("{request:?}: {e}"),
    }
}

/// Sends a raw message; returns the rejection code, or the reply decoded as a response.
fn raw(endpoint: sys::Handle, message: &Message) -> Result<Response, DecodeError> {
    let reply = sys::call(endpoint, message, TIMEOUT).expect("raw call");
    if reply.label == REJECTED {
        return Err(DecodeError::from_code(reply.words[0]));
    }
    let response = Response::decode(&reply).expect("the server's replies decode");
    if let Response::Buffer { memory, .. } = response {
        let _ = sys::cap_close(memory.0);
    }
    Ok(response)
}

fn main() -> i32 {
    rt::log::set_prefix("rt_ipc");
    let registry = sys::endpoint_create().expect("endpoint");
    let server = spawn(&Spawn {
        path: "/bin/rt_ipc_server",
        name: "rt_ipc_server",
        quota: 8 << 20,
        priority: 20,
        cap: Some((registry, rights::SEND | rights::GRANT, 0)),
    })
    .expect("spawn the server");
    let registration = sys::recv(registry, TIMEOUT).expect("the server registers");
    let service = registration.message.cap.expect("the service endpoint");
    sys::reply(&Message::default()).expect("reply");
    let alice = sys::cap_duplicate(service, rights::SEND | rights::GRANT, 1).expect("badge 1");
    let bob = sys::cap_duplicate(service, rights::SEND | rights::GRANT, 2).expect("badge 2");
    let kv = Client::<Kv>::new(alice);
    let kv_bob = Client::<Kv>::new(bob);

    // Small values in the message words.
    assert_eq!(call(&kv, Request::Put { key: 1, value: 100, overwrite: false }), Response::Done);
    assert_eq!(call(&kv, Request::Put { key: 1, value: 5, overwrite: false }), Response::Exists);
    assert_eq!(call(&kv, Request::Put { key: 1, value: 5, overwrite: true }), Response::Done);
    assert_eq!(call(&kv, Request::Get { key: 1 }), Response::Value { value: Some(5) });
    assert_eq!(call(&kv_bob, Request::Get { key: 1 }), Response::Value { value: Some(5) });
    assert_eq!(call(&kv, Request::Get { key: 2 }), Response::Value { value: None });
    info!("put and get ok");

    // Bulk data through a shared buffer the server owns.
    let Response::Buffer { memory, len } = call(&kv, Request::OpenBuffer { len: 8192 }) else { panic!("no buffer") };
    assert_eq!(len, 8192);
    assert_eq!(call(&kv, Request::OpenBuffer { len: 8192 }), Response::Exists);
    assert_eq!(call(&kv_bob, Request::OpenBuffer { len: 1 << 30 }), Response::TooLarge);
    let buffer = SharedBuffer::map(memory.0).expect("map the buffer");
    let mut data = [0u8; 4096];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    buffer.write(0, &data).expect("write");
    let expected: u64 = data.iter().map(|&b| b as u64).sum();
    let sum = |offset, len| call(&kv, Request::Sum { range: BufRange { offset, len } });
    assert_eq!(sum(0, 4096), Response::Total { sum: expected });
    assert_eq!(sum(10, 0), Response::Total { sum: 0 });
    assert_eq!(sum(8000, 1000), Response::OutOfRange);
    assert_eq!(sum(u64::MAX - 10, 100), Response::OutOfRange);
    assert_eq!(sum(100, u64::MAX), Response::OutOfRange);
    assert_eq!(call(&kv_bob, Request::Sum { range: BufRange { offset: 0, len: 1 } }), Response::NoBuffer);
    info!("shared buffer sum ok ({expected})");

    let range = BufRange { offset: 100, len: 3000 };
    assert_eq!(call(&kv, Request::Store { key: 7, range }), Response::Done);
    buffer.write(4096, &[0xee; 4096]).expect("clear");
    assert_eq!(call(&kv, Request::Load { key: 7, offset: 5000 }), Response::Loaded { len: 3000 });
    let mut back = [0u8; 3000];
    buffer.read(5000, &mut back).expect("read");
    assert_eq!(back[..], data[100..3100]);
    assert_eq!(call(&kv, Request::Load { key: 7, offset: 6000 }), Response::OutOfRange);
    assert_eq!(call(&kv, Request::Load { key: 8, offset: 0 }), Response::NotFound);
    assert_eq!(buffer.read(8000, &mut back), Err(rt::ipc::BufferError::OutOfRange));
    info!("store and load ok");

    // Hostile messages: each gets an error reply, none stops the server.
    assert_eq!(raw(alice, &Message::new(999, [0; 4])), Err(DecodeError::UnknownLabel));
    assert_eq!(raw(alice, &Message::new(abi::syscall::label::FAULT, [14, 0, 0, 0])), Err(DecodeError::UnknownLabel));
    assert_eq!(raw(alice, &Message::new(REJECTED, [1, 2, 3, 4])), Err(DecodeError::UnknownLabel));
    // Put's `overwrite` is byte 16 (word 2): 7 is not a bool.
    assert_eq!(raw(alice, &Message::new(1, [3, 4, 7, 0])), Err(DecodeError::InvalidValue));
    // A capability nobody asked for: rejected, and the server closes its copy.
    let stray = sys::notification_create().expect("notification");
    let mut get_with_cap = Message::new(2, [1, 0, 0, 0]);
    get_with_cap.cap = Some(stray);
    assert_eq!(raw(alice, &get_with_cap), Err(DecodeError::UnexpectedCapability));
    info!("malformed messages rejected");

    // Random labels (known and not) and words, some with a capability.
    let mut seed = 0x7475_7474_6921u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut rejected, mut answered) = (0, 0);
    for _ in 0..FUZZ {
        let r = next();
        let label = if r & 1 == 0 { (r >> 8) as u32 % 12 } else { (r >> 8) as u32 };
        let mut message = Message::new(label, [next(), next() % 16384, next() & 0x1ff, next()]);
        if r & 0x30 == 0 {
            message.cap = Some(stray);
        }
        match raw(alice, &message) {
            Ok(_) => answered += 1,
            Err(_) => rejected += 1,
        }
    }
    info!("{FUZZ} random messages: {rejected} rejected, {answered} answered");
    assert_eq!(call(&kv, Request::Get { key: 1 }), Response::Value { value: Some(5) });
    rt::println!("rt_ipc: the server still serves after {} hostile messages", FUZZ + 5);

    // Kernel errors come through typed: a call nobody takes times out...
    let nobody = Client::<Kv>::new(registry);
    assert_eq!(nobody.call(&Request::Get { key: 1 }, 20_000_000), Err(IpcError::Kernel(sys::Error::TimedOut)));
    // ...and a dead server is an error, not a hang.
    drop(buffer);
    sys::cap_revoke(server).expect("kill the server");
    match kv.call(&Request::Get { key: 1 }, TIMEOUT) {
        Err(IpcError::Kernel(e)) => rt::println!("rt_ipc: after the server's death: {e:?}"),
        other => panic!("a call to a dead server: {other:?}"),
    }
    rt::println!("rt_ipc: ok");
    0
}
