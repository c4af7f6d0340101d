//! Test program (init): a task that exhausts its quota gets an error; the system runs on.
#![no_std]
#![no_main]

use rt::spawn::{spawn, Spawn};
use rt::sys::{self, Message};

rt::entry!(main);

fn main() -> i32 {
    let done = sys::endpoint_create().expect("endpoint");
    spawn(&Spawn {
        path: "/bin/quota_hog",
        name: "quota_hog",
        quota: 256 * 1024,
        priority: 20,
        cap: Some((done, abi::syscall::rights::SEND, 0)),
    })
    .expect("spawn");
    let report = sys::recv(done, 10_000_000_000).expect("the hog reports");
    sys::reply(&Message::default()).expect("reply");
    rt::println!("quota: the hog made {} endpoints before its quota ran out", report.message.words[0]);
    // The system runs on: init still creates objects and does IPC.
    let ep = sys::endpoint_create().expect("an endpoint after the hog");
    let n = sys::notification_create().expect("a notification after the hog");
    sys::signal(n, 1).expect("signal");
    assert_eq!(sys::wait(n, 0), Ok(1));
    assert_eq!(sys::recv(ep, 0).err(), Some(sys::Error::WouldBlock));
    rt::println!("quota: ok, the system runs on");
    0
}
