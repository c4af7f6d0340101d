//! Test program: call/reply ping-pong between two threads through an endpoint, with badges and
//! a transferred capability; then measures the round trip (instructions under icount).
#![no_std]
#![no_main]

use rt::sys::{self, Message, FOREVER_NS};

rt::entry!(main);

const ROUNDS: u64 = 10_000;

extern "C" fn server(endpoint: u64) -> ! {
    let endpoint = endpoint as sys::Handle;
    let mut incoming = sys::recv(endpoint, FOREVER_NS).expect("first call");
    loop {
        let m = incoming.message;
        // Echo: label + 1, words reversed, badge in word 3.
        let reply = Message::new(m.label + 1, [m.words[3], m.words[2], m.words[1], incoming.badge]);
        incoming = sys::reply_recv(endpoint, &reply, FOREVER_NS).expect("next call");
    }
}

fn main() -> i32 {
    let ep = sys::endpoint_create().expect("endpoint");
    let client = sys::cap_duplicate(ep, 0x7f, 0xbad9e).expect("badged copy");
    sys::thread_create(server, rt::stack(16384).expect("a stack"), 10, ep as u64).expect("server thread");

    let reply = sys::call(client, &Message::new(41, [1, 2, 3, 4]), FOREVER_NS).expect("call");
    assert_eq!(reply, Message::new(42, [4, 3, 2, 0xbad9e]));
    rt::println!("ipc_pingpong: first round trip ok (label, words, badge)");

    for i in 0..ROUNDS {
        let r = sys::call(client, &Message::new(i as u32, [i, 0, 0, 7]), FOREVER_NS).expect("call");
        assert_eq!((r.label, r.words[0], r.words[3]), (i as u32 + 1, 7, 0xbad9e));
    }
    let start = rt::rdtsc();
    for i in 0..ROUNDS {
        sys::call(client, &Message::new(i as u32, [0; 4]), FOREVER_NS).expect("call");
    }
    let total = rt::rdtsc() - start;
    rt::println!("ipc_pingpong: {ROUNDS} round trips ok");
    rt::println!("bench ipc_roundtrip iterations={ROUNDS} instructions={total} per_op={}", total / ROUNDS);
    0
}
