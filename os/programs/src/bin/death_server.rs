//! A server that takes one call and never answers (see `server_death`).
#![no_std]
#![no_main]

use rt::sys::{self, Message, FOREVER_NS};

rt::entry!(main);

fn main() -> i32 {
    let registry = rt::startup_arg() as sys::Handle;
    let service = sys::endpoint_create().expect("endpoint");
    let mut register = Message::new(1, [0; 4]);
    register.cap = Some(service);
    sys::call(registry, &register, FOREVER_NS).expect("register");
    let first = sys::recv(service, FOREVER_NS).expect("a call");
    rt::println!("death_server: took a call (label {}) and will not answer", first.message.label);
    sys::park()
}
