//! Benchmark program (a service): time from a service's crash to the service restored, in
//! guest nanoseconds (= instructions under `-icount shift=0`). For each `crashy<n>` service of
//! its manifest (`svc_crashy`, which faults while serving its fourth ping), it pings three
//! times, then sends the fourth ping and starts the clock: the server faults, init (its
//! supervisor) is told, restarts it after its first backoff delay, the new instance registers
//! with the name service; the clock stops when a fresh lookup and ping are answered. Each
//! service crashes once, so every sample is a first crash (the backoff grows with repeated
//! crashes, on purpose). Prints `bench restart ...` lines (xtask/src/bench/restart.rs).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::vec::Vec;
use rt::ipc::Client;
use rt::sys;
use svc::echo::{Echo, Request, Response};

rt::entry!(main);

/// The services it crashes: `crashy1` to `crashy<SERVICES>`.
const SERVICES: u32 = 8;
/// How long one answer may take before the benchmark gives up.
const PING_NS: u64 = 1_000_000_000;
/// Between attempts to reach the restarted service.
const RETRY_NS: u64 = 20_000;
/// Give up on a restart after this long.
const GIVE_UP_NS: u64 = 5_000_000_000;

fn main() -> i32 {
    let Ok(mut names) = svc::names() else {
        rt::println!("bench restart error=no name service");
        return svc::exit(1);
    };
    let mut samples = Vec::new();
    for n in 1..=SERVICES {
        let name = format!("crashy{n}");
        match crash_and_restore(&mut names, &name) {
            Ok(ns) => {
                rt::println!("restartbench: {name} restored {} us after its crash", ns / 1000);
                samples.push(ns);
            }
            Err(e) => {
                rt::println!("bench restart error={name}: {e}");
                return svc::exit(1);
            }
        }
    }
    let total: u64 = samples.iter().sum();
    let count = samples.len() as u64;
    let max = samples.iter().copied().max().unwrap_or(0);
    let min = samples.iter().copied().min().unwrap_or(0);
    rt::println!("bench restart iterations={count} instructions={total} per_op={}", total / count.max(1));
    rt::println!("bench restart_max iterations=1 instructions={max} per_op={max}");
    rt::println!("bench restart_min iterations=1 instructions={min} per_op={min}");
    svc::exit(0)
}

fn ping(endpoint: sys::Handle, n: u64) -> Result<u64, rt::ipc::IpcError> {
    match Client::<Echo>::new(endpoint).call(&Request::Ping { n }, PING_NS)? {
        Response::Pong { served, .. } => Ok(served),
    }
}

/// Nanoseconds from the fatal ping to the first answer of the restarted service.
fn crash_and_restore(names: &mut Client<svc::names::Names>, name: &str) -> Result<u64, alloc::string::String> {
    let endpoint = svc::lookup(names, name, 2_000_000_000).map_err(|e| format!("lookup: {e:?}"))?;
    for n in 0..3 {
        ping(endpoint, n).map_err(|e| format!("ping {n}: {e}"))?;
    }
    let start = sys::time_now();
    if ping(endpoint, 3).is_ok() {
        return Err("the fourth ping was answered; the service did not crash".into());
    }
    let _ = sys::cap_close(endpoint);
    loop {
        if sys::time_now() - start > GIVE_UP_NS {
            return Err("not restored within 5 s".into());
        }
        if let Ok(fresh) = svc::lookup(names, name, 0) {
            let answered = ping(fresh, 0);
            let _ = sys::cap_close(fresh);
            if answered == Ok(1) {
                return Ok(sys::time_now() - start);
            }
        }
        sys::sleep(RETRY_NS);
    }
}
