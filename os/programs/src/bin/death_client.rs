//! Calls the service and reports how the call ended (see `server_death`).
#![no_std]
#![no_main]

use rt::sys::{self, Error, Message, FOREVER_NS};

rt::entry!(main);

fn main() -> i32 {
    let service = rt::startup_arg() as sys::Handle;
    match sys::call(service, &Message::new(7, [0; 4]), FOREVER_NS) {
        Err(Error::PeerDied) => {
            rt::println!("death_client: call ended with PeerDied");
            0
        }
        other => {
            rt::println!("death_client: unexpected {other:?}");
            1
        }
    }
}
