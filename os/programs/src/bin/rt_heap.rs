//! Test program (init): the runtime's heap. Collections grow the heap across several memory
//! objects, big and over-aligned blocks work, two threads allocate at once; then a child with a
//! small quota (`rt_heap_child`) finds that an allocation beyond its quota fails cleanly.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use rt::spawn::{spawn, Spawn};
use rt::sys::{self, Message};

rt::entry!(main);

const ROUNDS: u64 = 20_000;

/// Allocates and frees boxes of varying sizes, checking their contents; then signals its bit
/// (`arg >> 32`) on the notification `arg as u32`.
extern "C" fn churn(arg: u64) -> ! {
    let mut kept: Vec<Box<[u64]>> = Vec::new();
    for i in 0..ROUNDS {
        let len = (i % 37 + 1) as usize;
        let block: Box<[u64]> = (0..len as u64).map(|j| i ^ j).collect();
        kept.push(block);
        if kept.len() > 64 {
            let old = kept.remove((i % 64) as usize);
            assert!(old.iter().enumerate().all(|(j, &v)| v ^ j as u64 == old[0]), "a block changed");
        }
    }
    sys::signal(arg as sys::Handle, 1 << (arg >> 32)).expect("signal");
    sys::thread_exit()
}

#[repr(align(4096))]
struct Page([u8; 4096]);

fn main() -> i32 {
    let start = rt::heap::stats();
    assert_eq!(start.regions, 0, "nothing allocated before main");

    let mut v: Vec<u64> = Vec::new();
    for i in 0..200_000u64 {
        v.push(i * i);
    }
    assert!(v.iter().enumerate().all(|(i, &x)| x == (i * i) as u64));
    let mut s = String::new();
    for i in 0..2000 {
        write!(s, "{i},").unwrap();
    }
    assert!(s.starts_with("0,1,2,") && s.ends_with("1998,1999,"));
    let mut map = BTreeMap::new();
    for i in 0..10_000u64 {
        map.insert(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), i);
    }
    assert_eq!(map.len(), 10_000);
    assert_eq!(map.values().sum::<u64>(), 10_000 * 9_999 / 2);
    let grown = rt::heap::stats();
    rt::println!(
        "rt_heap: collections ok; heap {} regions, {} KiB mapped, {} KiB used",
        grown.regions,
        grown.mapped / 1024,
        grown.used / 1024
    );
    assert!(grown.regions >= 4, "the heap grew across several regions");

    // A block larger than a regular region gets one of its own.
    let big = alloc::vec![0x5au8; 20 << 20];
    assert!(big.iter().all(|&b| b == 0x5a));
    drop(big);
    // Over-aligned blocks.
    let pages: Vec<Box<Page>> = (0..4).map(|i| Box::new(Page([i; 4096]))).collect();
    assert!(pages.iter().all(|p| (&p.0 as *const u8 as usize).is_multiple_of(4096)));
    drop(pages);
    drop((v, s, map));
    rt::println!("rt_heap: big and aligned blocks ok");

    // Two threads and this one (all at init's priority, round robin) allocate at once.
    let done = sys::notification_create().expect("notification");
    for bit in 0..2u64 {
        let arg = done as u64 | bit << 32;
        sys::thread_create(churn, rt::stack(32 * 1024).expect("stack"), 63, arg).expect("thread");
    }
    let mut finished = 0;
    let mut mine: Vec<String> = Vec::new();
    while finished != 0b11 {
        for i in 0..100 {
            mine.push(alloc::format!("{i}"));
        }
        assert!(mine.iter().enumerate().all(|(i, s)| s.parse() == Ok(i)));
        mine.clear();
        finished |= sys::wait(done, 0).unwrap_or(0);
        sys::yield_now();
    }
    rt::println!("rt_heap: threads ok");

    // Over quota in a child: an error, not a crash.
    let report = sys::endpoint_create().expect("endpoint");
    spawn(&Spawn {
        path: "/bin/rt_heap_child",
        name: "rt_heap_child",
        quota: 2 << 20,
        priority: 20,
        cap: Some((report, abi::syscall::rights::SEND, 0)),
    })
    .expect("spawn the child");
    let got = sys::recv(report, 10_000_000_000).expect("the child reports");
    sys::reply(&Message::default()).expect("reply");
    assert_eq!(got.message.label, 1, "the child's checks passed");
    // The child now aborts on an infallible allocation over its quota; wait for its report.
    sys::sleep(50_000_000);
    rt::println!("rt_heap: ok");
    0
}
