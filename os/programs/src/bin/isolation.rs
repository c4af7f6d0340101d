//! Test program (init): another task cannot read this task's memory. init maps a secret at
//! `SECRET_AT`; `snoop` reads that address in its own address space, where nothing is mapped;
//! the fault is delivered to init, its supervisor, which reports it and ends `snoop`.
#![no_std]
#![no_main]

use abi::syscall::{label, map};
use rt::spawn::{spawn, Spawn};
use rt::sys;

rt::entry!(main);

fn main() -> i32 {
    let secret = sys::memory_create(0, 4096).expect("memory");
    sys::memory_map(secret, 0, programs::SECRET_AT, 0, 4096, map::READ | map::WRITE).expect("map");
    // Safety: just mapped, writable, ours.
    unsafe { core::ptr::write_volatile(programs::SECRET_AT as *mut u64, 0x5ec4e7) };
    let supervisor = sys::endpoint_create().expect("endpoint");
    let snoop =
        spawn(&Spawn { path: "/bin/snoop", name: "snoop", quota: 1 << 20, priority: 10, cap: None }).expect("spawn");
    sys::task_set_supervisor(snoop, supervisor).expect("supervisor");
    let fault = sys::recv(supervisor, 5_000_000_000).expect("a fault message");
    let m = fault.message;
    assert_eq!(m.label, label::FAULT);
    rt::println!("isolation: supervisor told: vector {} error {:#x} address {:#x}", m.words[0], m.words[1], m.words[2]);
    let ok = m.words[0] == 14 && m.words[2] == programs::SECRET_AT && m.words[1] & 1 == 0;
    sys::cap_revoke(snoop).expect("end snoop");
    // Safety: still mapped here.
    let intact = unsafe { core::ptr::read_volatile(programs::SECRET_AT as *const u64) } == 0x5ec4e7;
    rt::println!("isolation: {}", if ok && intact { "ok" } else { "FAILED" });
    if ok && intact {
        0
    } else {
        1
    }
}
