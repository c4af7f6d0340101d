//! The microkernel benchmark (run as init under `-icount shift=0`, where the TSC counts
//! instructions): IPC call + reply between two address spaces, a null system call, a
//! notification signal-to-wake between two tasks, and a page fault handled by the supervisor.
//! Prints one `bench <name> iterations=<n> instructions=<total> per_op=<x>` line each.
#![no_std]
#![no_main]

use abi::syscall::{map, rights};
use programs::{peer, CALLS, FAULTS, FAULT_BASE, NOTIFIES, NULLS, WARMUP};
use rt::spawn::{spawn, Spawn};
use rt::sys::{self, Message, FOREVER_NS};

rt::entry!(main);

fn report(name: &str, iterations: u64, instructions: u64) {
    rt::println!(
        "bench {name} iterations={iterations} instructions={instructions} per_op={}",
        instructions / iterations
    );
}

fn main() -> i32 {
    let ep = sys::endpoint_create().expect("endpoint");
    let peer_task = Spawn {
        path: "/bin/benchpeer",
        name: "benchpeer",
        quota: 1 << 20,
        priority: 63,
        cap: Some((ep, rights::RECEIVE, 0)),
    };
    spawn(&peer_task).expect("spawn benchpeer");

    // IPC round trip: call + reply between two address spaces.
    let echo = Message::new(peer::ECHO, [1, 2, 3, 4]);
    for _ in 0..WARMUP {
        sys::call(ep, &echo, FOREVER_NS).expect("call");
    }
    let start = rt::rdtsc();
    for _ in 0..CALLS {
        sys::call(ep, &echo, FOREVER_NS).expect("call");
    }
    report("call", CALLS, rt::rdtsc() - start);

    // Null system call: yield with nothing else ready.
    let start = rt::rdtsc();
    for _ in 0..NULLS {
        sys::yield_now();
    }
    report("null", NULLS, rt::rdtsc() - start);

    // Notification ping-pong between the tasks; half a round trip is one signal-to-wake.
    let pong = sys::notification_create().expect("notification");
    let mut ask = Message::new(peer::NOTIFY, [NOTIFIES + WARMUP, 0, 0, 0]);
    ask.cap = Some(pong);
    let ping = sys::call(ep, &ask, FOREVER_NS).expect("notify setup").cap.expect("the ping notification");
    for _ in 0..WARMUP {
        sys::signal(ping, 1).expect("signal");
        sys::wait(pong, FOREVER_NS).expect("wait");
    }
    let start = rt::rdtsc();
    for _ in 0..NOTIFIES {
        sys::signal(ping, 1).expect("signal");
        sys::wait(pong, FOREVER_NS).expect("wait");
    }
    report("notify", 2 * NOTIFIES, rt::rdtsc() - start);

    // Page faults: the child touches unmapped pages; each fault comes here, gets a page, resumes.
    let faults = sys::endpoint_create().expect("endpoint");
    let child = spawn(&Spawn { path: "/bin/faulter", name: "faulter", quota: 1 << 26, priority: 10, cap: None })
        .expect("spawn faulter");
    sys::task_set_supervisor(child, faults).expect("supervisor");
    let pages = sys::memory_create(child, (FAULTS + WARMUP) * 4096).expect("memory");
    let mut start = 0;
    for i in 0..FAULTS + WARMUP {
        if i == WARMUP {
            start = rt::rdtsc();
        }
        let fault = if i == 0 {
            sys::recv(faults, FOREVER_NS)
        } else {
            sys::reply_recv(faults, &Message::default(), FOREVER_NS)
        };
        let address = fault.expect("a fault").message.words[2];
        assert_eq!(address, FAULT_BASE + i * 4096, "faults in order");
        sys::memory_map(pages, child, address, i * 4096, 4096, map::READ | map::WRITE).expect("map");
    }
    report("fault", FAULTS, rt::rdtsc() - start);
    sys::reply(&Message::default()).expect("resume the last fault");
    0
}
