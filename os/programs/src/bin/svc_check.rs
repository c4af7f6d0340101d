//! Test service (`systests/tests/services.rs`): checks the supervisor, the name service and the
//! console driver from a service's point of view, prints what it found, and exits (its manifest
//! entry has `shutdown-on-exit`, so init then stops the machine). Expects the manifest to give
//! it `endpoint crashy`, `console` and `ports 0x80`, in that order.
#![no_std]
#![no_main]

extern crate alloc;

use rt::ipc::{Client, IpcError, SharedBuffer};
use rt::sys::{self, Error, FOREVER_NS};
use svc::boot::{self, Response};
use svc::console::{Console, Request as ConsoleRequest, Response as ConsoleResponse};
use svc::echo::{Echo, Request as Ping, Response as Pong};
use svc::LookupError;

rt::entry!(main);

/// Set by the Ctrl-C thread once its injection through the UART's loopback has ended.
static INJECTED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

fn main() -> i32 {
    let mut ok = true;
    ok &= capabilities();
    let Ok(mut names) = svc::names() else {
        rt::println!("svc_check: no name service");
        return svc::exit(1);
    };
    ok &= pings(&mut names);
    let denied = svc::lookup(&mut names, "crashloop", 0);
    rt::println!("svc_check: lookup of crashloop: {denied:?}");
    ok &= denied == Err(LookupError::Denied);
    // The console test puts the UART in loopback mode for a moment, and what the kernel prints
    // meanwhile goes into the loopback instead of out; so first let crashloop's backoff grow
    // (and init report it) before the console test.
    wait_for_crashloop();
    ok &= console(&mut names);
    ok &= status();
    rt::println!("svc_check: {}", if ok { "ok" } else { "FAILED" });
    svc::exit(if ok { 0 } else { 1 })
}

/// Exactly the manifest's capabilities, and they work only as far as they reach.
fn capabilities() -> bool {
    let Ok(caps) = svc::capabilities() else { return false };
    let ports = svc::first_ports(&caps);
    let shape = matches!(
        caps.as_slice(),
        [Response::Endpoint { name: a }, Response::Endpoint { name: b }, Response::Ports { first: 0x80, count: 1, .. }]
            if svc::name_str(a) == "crashy" && svc::name_str(b) == "console"
    );
    let Some((ports, _, _)) = ports else { return false };
    let inside = rt::device::outb(ports, 0x80, 0x42).is_ok();
    let outside = rt::device::inb(ports, 0x81) == Err(Error::InvalidArgument);
    rt::println!(
        "svc_check: {} capabilities, as listed: {shape}, port 0x80: {inside}, 0x81 refused: {outside}",
        caps.len()
    );
    shape && inside && outside
}

/// Ten pings to `crashy`, which faults every fourth: reconnect through the name service.
fn pings(names: &mut Client<svc::names::Names>) -> bool {
    let mut reconnects = 0;
    let mut stale = 0;
    let mut endpoint = match svc::lookup(names, "crashy", 2_000_000_000) {
        Ok(e) => e,
        Err(e) => {
            rt::println!("svc_check: lookup of crashy failed: {e:?}");
            return false;
        }
    };
    let mut n = 0;
    while n < 10 {
        match Client::<Echo>::new(endpoint).call(&Ping::Ping { n }, 2_000_000_000) {
            Ok(Pong::Pong { n: back, .. }) if back == n => n += 1,
            Ok(other) => {
                rt::println!("svc_check: wrong pong {other:?}");
                return false;
            }
            Err(IpcError::Kernel(error @ (Error::PeerDied | Error::InvalidHandle))) => {
                let _ = sys::cap_close(endpoint);
                // PeerDied: the service died under this call (a crash). InvalidHandle: the
                // endpoint was already dead (a stale name, before init told the name service):
                // look again without counting another crash.
                if error == Error::PeerDied {
                    reconnects += 1;
                }
                stale += 1;
                if reconnects > 10 || stale > 100 {
                    return false;
                }
                // The service is being restarted (after its backoff); until it has registered
                // again the name service may not know it, or still give the old endpoint. A
                // client retries for a while, as any client of a restartable service must.
                let give_up = sys::time_now() + 5_000_000_000;
                endpoint = loop {
                    match svc::lookup(names, "crashy", 2_000_000_000) {
                        Ok(e) => break e,
                        Err(e) if sys::time_now() > give_up => {
                            rt::println!("svc_check: lookup after a crash failed: {e:?}");
                            return false;
                        }
                        Err(_) => sys::sleep(20_000_000),
                    }
                };
            }
            Err(e) => {
                rt::println!("svc_check: ping failed: {e}");
                return false;
            }
        }
    }
    rt::println!("svc_check: 10 pings answered, reconnected {reconnects} times through the name service");
    reconnects >= 2
}

/// Output, and input through the UART's loopback with line editing.
fn console(names: &mut Client<svc::names::Names>) -> bool {
    let console = match svc::lookup(names, "console", 2_000_000_000) {
        Ok(e) => Client::<Console>::new(e),
        Err(e) => {
            rt::println!("svc_check: lookup of console failed: {e:?}");
            return false;
        }
    };
    if svc::console_write(&console, b"svc_check: written through the console service\n").is_err() {
        return false;
    }
    let Ok(ConsoleResponse::Buffer { memory, .. }) =
        console.call(&ConsoleRequest::OpenBuffer { len: 4096 }, FOREVER_NS)
    else {
        return false;
    };
    let Ok(buffer) = SharedBuffer::map(memory.0) else { return false };
    let mut ok = true;
    for (input, expected) in [(&b"abc\x7fd\r"[..], "abd"), (b"junk\x15hi there\r", "hi there"), (b"x\x7f\x7f\r", "")] {
        let mut bytes = [0; svc::console::INLINE_MAX];
        bytes[..input.len()].copy_from_slice(input);
        let injected = console.call(&ConsoleRequest::Inject { len: input.len() as u8, bytes }, FOREVER_NS);
        let line = console.call(&ConsoleRequest::ReadLine { offset: 0 }, 2_000_000_000);
        let mut got = [0u8; 64];
        let text = match line {
            Ok(ConsoleResponse::Line { len }) if len as usize <= got.len() => {
                let _ = buffer.read(0, &mut got[..len as usize]);
                core::str::from_utf8(&got[..len as usize]).unwrap_or("?")
            }
            _ => "<no line>",
        };
        rt::println!("svc_check: injected {input:?} ({injected:?}), read line {text:?}");
        ok &= text == expected;
    }
    // Ctrl-C while a reader waits cancels the read; meanwhile a second reader is turned away.
    static CONSOLE: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    CONSOLE.store(console.endpoint(), core::sync::atomic::Ordering::Relaxed);
    extern "C" fn cancel(_: u64) -> ! {
        let console = Client::<Console>::new(CONSOLE.load(core::sync::atomic::Ordering::Relaxed));
        sys::sleep(100_000_000);
        let second = console.call(&ConsoleRequest::ReadLine { offset: 0 }, FOREVER_NS);
        rt::println!("svc_check: a second reader gets {second:?}");
        let mut bytes = [0; svc::console::INLINE_MAX];
        bytes[..5].copy_from_slice(b"oops\x03");
        let _ = console.call(&ConsoleRequest::Inject { len: 5, bytes }, FOREVER_NS);
        INJECTED.store(true, core::sync::atomic::Ordering::Release);
        sys::thread_exit()
    }
    let Some(stack) = rt::stack(16 * 1024) else { return false };
    if sys::thread_create(cancel, stack, 1, 0).is_err() {
        return false;
    }
    let cancelled = console.call(&ConsoleRequest::ReadLine { offset: 0 }, 3_000_000_000);
    // The read ends at the ^C while the injection is still under way, with the UART in loopback
    // mode (what anyone prints meanwhile is looped back, not shown): wait for it to end first.
    let give_up = sys::time_now() + 3_000_000_000;
    while !INJECTED.load(core::sync::atomic::Ordering::Acquire) && sys::time_now() < give_up {
        sys::sleep(10_000_000);
    }
    rt::println!("svc_check: a read interrupted by Ctrl-C gives {cancelled:?}");
    ok &= cancelled == Ok(ConsoleResponse::Cancelled);
    ok
}

/// How often init has restarted crashloop so far.
fn crashloop_restarts() -> u32 {
    for index in 0.. {
        match svc::init().call(&boot::Request::Status { index }, FOREVER_NS) {
            Ok(Response::Service { name, restarts, .. }) if svc::name_str(&name) == "crashloop" => {
                return restarts;
            }
            Ok(Response::Service { .. }) => {}
            _ => break,
        }
    }
    0
}

/// init's status: crashy restarted, crashloop backed off, the rest running.
/// Waits (at most 10 s, for slow machines) until init has restarted crashloop four times, so its
/// backoff has grown past 80 ms.
fn wait_for_crashloop() {
    let give_up = sys::time_now() + 10_000_000_000;
    while sys::time_now() < give_up && crashloop_restarts() < 4 {
        sys::sleep(50_000_000);
    }
}

fn status() -> bool {
    let mut ok = true;
    for index in 0.. {
        let Ok(Response::Service { name, state, restarts, exit_kind, exit_value }) =
            svc::init().call(&boot::Request::Status { index }, FOREVER_NS)
        else {
            break;
        };
        let name = svc::name_str(&name);
        let state_text = boot::state::text(state);
        rt::println!("svc_check: status {name}: {state_text}, {restarts} restarts, last exit {exit_kind}/{exit_value}");
        ok &= match name {
            "names" | "console" | "check" => state == boot::state::RUNNING && restarts == 0,
            "crashy" => restarts >= 2 && exit_kind == boot::exit::FAULT && exit_value == 14,
            "crashloop" => restarts >= 3 && exit_kind == boot::exit::VANISHED,
            _ => true,
        };
    }
    ok
}
