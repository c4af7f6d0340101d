//! Test program: a million random system calls with random arguments from a fixed seed (printed,
//! so a failure reproduces), while a second thread keeps doing real IPC with the main thread's
//! server. The kernel must neither crash nor break the other thread's work.
#![no_std]
#![no_main]

use abi::syscall::{init_caps, init_caps::CONSOLE, Sys};
use core::sync::atomic::{AtomicU64, Ordering};
use rt::sys::{self, Message, FOREVER_NS};

rt::entry!(main);

const CALLS: u64 = 1_000_000;
const SEED: u64 = 0x7475_7474_6921;
static HEARTBEATS: AtomicU64 = AtomicU64::new(0);

extern "C" fn echo_server(endpoint: u64) -> ! {
    let ep = endpoint as sys::Handle;
    let mut incoming = sys::recv(ep, FOREVER_NS).expect("recv");
    loop {
        let reply = Message::new(incoming.message.label, [incoming.message.words[0] + 1, 0, 0, 0]);
        incoming = sys::reply_recv(ep, &reply, FOREVER_NS).expect("reply_recv");
    }
}

extern "C" fn heartbeat(endpoint: u64) -> ! {
    let ep = endpoint as sys::Handle;
    let mut n = 0;
    loop {
        let r = sys::call(ep, &Message::new(1, [n, 0, 0, 0]), FOREVER_NS).expect("heartbeat call");
        assert_eq!(r.words[0], n + 1);
        n += 1;
        HEARTBEATS.store(n, Ordering::Relaxed);
        sys::yield_now();
    }
}

fn main() -> i32 {
    rt::println!("syscall_fuzz: seed {SEED:#x}, {CALLS} calls");
    // A task without device authority: with init's I/O ports random writes could legitimately
    // reset or power off the machine, which would test nothing about the kernel.
    for device in [init_caps::IO_PORTS, init_caps::IRQ_LINES, init_caps::DEVICE_MEMORY] {
        sys::cap_close(device).expect("closing a device capability");
    }
    let ep = sys::endpoint_create().expect("endpoint");
    let client = sys::cap_duplicate(ep, 0x7f, 0).expect("copy");
    let server = sys::thread_create(echo_server, rt::stack(16384).expect("a stack"), 20, ep as u64).expect("server");
    let beater =
        sys::thread_create(heartbeat, rt::stack(16384).expect("a stack"), 20, client as u64).expect("heartbeat");
    // The fuzzer must not touch these (with them it could legitimately steal or answer the
    // heartbeat's calls, kill its threads or close the console); every other handle is fair
    // game. Until tasks can be created from user space, the heartbeat shares this task.
    let protected = [CONSOLE, ep, client, server, beater];

    let mut x = SEED;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut errors = 0u64;
    for i in 0..CALLS {
        if i % 100_000 == 0 {
            rt::println!("syscall_fuzz: {i} calls, {errors} errors, {} heartbeats", HEARTBEATS.load(Ordering::Relaxed));
        }
        let number = (next() % (Sys::ALL.len() as u64 + 3)) as u16;
        // Ending this task or thread would end the test, not find a bug.
        if number == Sys::Exit as u16 || number == Sys::ThreadExit as u16 {
            continue;
        }
        let handle = match next() % 4 {
            0 => next() as u32,
            1 => 0,
            _ => (next() % 40) as u32 + 1,
        };
        if protected.contains(&handle) {
            continue;
        }
        let mut a = [0u64; 7];
        for w in a.iter_mut() {
            *w = match next() % 5 {
                0 => next(),
                1 => next() % 64,
                2 => 0x40_0000 + next() % 0x10000,
                3 => 0x7fff_ffff_0000 + next() % 0x1_0000,
                _ => 0,
            };
        }
        // Blocking calls mostly poll (timeout 0); one in 10,000 may block briefly (the timer
        // has 10 ms resolution, so each block costs a tick).
        let may_block = next() % 10_000 == 0;
        a[6] = if may_block { a[6] % 50_000 } else { 0 };
        if number == Sys::Sleep as u16 {
            a[0] = if may_block { a[0] % 50_000 } else { 0 };
        }
        if number == Sys::ThreadCreate as u16 {
            // Random entry points would start threads that crash the task (a fault in a task
            // without a supervisor ends it): those belong to the isolation tests.
            continue;
        }
        // Safety: the kernel must reject or safely perform any arguments; the ones that could
        // end this task were skipped above.
        let (status, _) = unsafe { sys::raw(number as u64 | (handle as u64) << 32, a) };
        if status != 0 {
            errors += 1;
        }
    }
    let beats = HEARTBEATS.load(Ordering::Relaxed);
    rt::println!("syscall_fuzz: done, {errors} errors, {beats} heartbeats");
    let before = beats;
    sys::sleep(30_000_000);
    let after = HEARTBEATS.load(Ordering::Relaxed);
    if after > before {
        rt::println!("syscall_fuzz: ok, the other threads still work");
        0
    } else {
        rt::println!("syscall_fuzz: FAILED, heartbeat stopped at {after}");
        1
    }
}
