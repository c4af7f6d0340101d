//! The other side of the IPC benchmarks, in its own task: answers calls on the endpoint it is
//! given, and plays notification ping-pong when asked.
#![no_std]
#![no_main]

use programs::peer;
use rt::sys::{self, Message, FOREVER_NS};

rt::entry!(main);

fn main() -> i32 {
    let ep = rt::startup_arg() as sys::Handle;
    let mut incoming = sys::recv(ep, FOREVER_NS).expect("recv");
    loop {
        let m = incoming.message;
        let reply = match m.label {
            peer::NOTIFY => {
                let pong = m.cap.expect("a notification to signal");
                let ping = sys::notification_create().expect("notification");
                let mut reply = Message::new(0, [0; 4]);
                reply.cap = Some(ping);
                sys::reply(&reply).expect("reply");
                for _ in 0..m.words[0] {
                    sys::wait(ping, FOREVER_NS).expect("wait");
                    sys::signal(pong, 1).expect("signal");
                }
                incoming = sys::recv(ep, FOREVER_NS).expect("recv");
                continue;
            }
            _ => Message::new(m.label, m.words),
        };
        incoming = sys::reply_recv(ep, &reply, FOREVER_NS).expect("reply_recv");
    }
}
