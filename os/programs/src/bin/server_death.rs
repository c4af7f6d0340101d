//! Test program (init): a server dies while clients are blocked on it; each client gets an
//! error (`PeerDied`), none hangs. The server owns its endpoint, so the endpoint dies with it.
#![no_std]
#![no_main]

use abi::syscall::rights;
use rt::spawn::{spawn, Spawn};
use rt::sys::{self, Message};

rt::entry!(main);

fn main() -> i32 {
    let registry = sys::endpoint_create().expect("endpoint");
    let server = spawn(&Spawn {
        path: "/bin/death_server",
        name: "death_server",
        quota: 1 << 20,
        priority: 20,
        cap: Some((registry, rights::SEND | rights::GRANT, 0)),
    })
    .expect("spawn server");
    // The server registers: its call carries a SEND capability to its endpoint.
    let registration = sys::recv(registry, 5_000_000_000).expect("registration");
    let service = registration.message.cap.expect("the service endpoint");
    sys::reply(&Message::default()).expect("reply");
    for name in ["client_a", "client_b"] {
        let client = Spawn {
            path: "/bin/death_client",
            name,
            quota: 1 << 20,
            priority: 30,
            cap: Some((service, rights::SEND, 0)),
        };
        spawn(&client).expect("spawn client");
    }
    // Let both clients block: one is being served (never answered), one is queued.
    sys::sleep(50_000_000);
    rt::println!("server_death: killing the server");
    sys::cap_revoke(server).expect("kill");
    sys::sleep(50_000_000);
    rt::println!("server_death: done");
    0
}
