//! The console driver (docs/services.md): the 16550 UART through the I/O-port and interrupt
//! capabilities the manifest gives it. Input is interrupt-driven (receive-data interrupt) with
//! line editing and echo: backspace/DEL erases a character, Ctrl-U the line, Ctrl-C cancels it,
//! Enter completes it. Several clients write (inline bytes or a shared buffer); one at a time
//! reads a line (`ReadLine` blocks until a line is complete; a second reader gets `Busy`).
//! Registered in the name service as `console`.
//!
//! Threads: an interrupt thread (drains the receive FIFO, edits, echoes) and two server
//! threads on the endpoint, so a blocked reader does not hold up writers.
#![no_std]
#![no_main]

extern crate alloc;

use abi::syscall::rights;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicPtr, Ordering};
use rt::device::{inb, irq_ack, irq_bind, outb};
use rt::ipc::{Cap, Server, SharedBuffer};
use rt::log::{info, warn};
use rt::sync::SpinLock;
use rt::sys::{self, Handle};
use svc::console::{Console, Request, Response, BUFFER_MAX, LINE_MAX};

rt::entry!(main);

// 16550 registers (offsets from the base port) and bits.
const DATA: u16 = 0;
const INTERRUPT_ENABLE: u16 = 1;
const FIFO_CONTROL: u16 = 2;
const MODEM_CONTROL: u16 = 4;
const LINE_STATUS: u16 = 5;
const DATA_READY: u8 = 1;
const TRANSMIT_EMPTY: u8 = 1 << 5;
const RECEIVE_INTERRUPT: u8 = 1;
/// DTR, RTS and OUT2 (which gates the interrupt line on PCs).
const MODEM_NORMAL: u8 = 0x0b;
const LOOPBACK: u8 = 0x10;

/// Complete lines kept while nobody reads.
const QUEUED_LINES: usize = 8;
/// The notification bit of the UART's interrupt, and of "a line is ready" for the reader.
const IRQ_BIT: u64 = 1;
const LINE_BIT: u64 = 1;

struct Uart {
    ports: Handle,
    base: u16,
}

impl Uart {
    fn read(&self, register: u16) -> u8 {
        inb(self.ports, self.base + register).unwrap_or(0)
    }

    fn write(&self, register: u16, value: u8) {
        let _ = outb(self.ports, self.base + register, value);
    }

    /// Sends bytes, waiting for the transmitter (bounded: a dead UART does not hang us).
    fn send(&self, bytes: &[u8]) {
        for &b in bytes {
            for _ in 0..100_000 {
                if self.read(LINE_STATUS) & TRANSMIT_EMPTY != 0 {
                    break;
                }
            }
            self.write(DATA, b);
        }
    }
}

/// Line-editing state, shared by the interrupt thread and the server threads.
#[derive(Default)]
struct Input {
    line: Vec<u8>,
    /// Complete lines (`None`: cancelled while a reader waited).
    complete: VecDeque<Option<Vec<u8>>>,
    last_was_cr: bool,
    reader: bool,
    /// In loopback (an `Inject`): echo goes here and is sent afterwards.
    loopback: bool,
    held_echo: Vec<u8>,
    /// Bytes received since the last `Inject` began.
    received: usize,
}

impl Input {
    /// Edits with one received byte; returns the echo.
    fn byte(&mut self, b: u8, echo: &mut Vec<u8>) {
        self.received += 1;
        let after_cr = core::mem::replace(&mut self.last_was_cr, b == b'\r');
        match b {
            b'\n' if after_cr => {}
            b'\r' | b'\n' => {
                echo.extend_from_slice(b"\r\n");
                let line = core::mem::take(&mut self.line);
                if self.complete.len() < QUEUED_LINES {
                    self.complete.push_back(Some(line));
                }
            }
            0x08 | 0x7f => {
                // Erase one character (a whole UTF-8 sequence).
                while let Some(c) = self.line.pop() {
                    if c & 0xc0 != 0x80 {
                        break;
                    }
                }
                echo.extend_from_slice(b"\x08 \x08");
            }
            0x15 => {
                let chars = self.line.iter().filter(|&&c| c & 0xc0 != 0x80).count();
                for _ in 0..chars {
                    echo.extend_from_slice(b"\x08 \x08");
                }
                self.line.clear();
            }
            0x03 => {
                echo.extend_from_slice(b"^C\r\n");
                self.line.clear();
                if self.reader && self.complete.is_empty() {
                    self.complete.push_back(None);
                }
            }
            0x20..=0x7e | 0x80..=0xff if self.line.len() < LINE_MAX => {
                self.line.push(b);
                echo.push(b);
            }
            _ => {}
        }
    }
}

struct Driver {
    uart: Uart,
    /// Held while writing to the UART, so a client's write is not interleaved with another's.
    output: SpinLock<()>,
    input: SpinLock<Input>,
    buffers: SpinLock<BTreeMap<u64, SharedBuffer>>,
    irq: (Handle, u8),
    irq_notification: Handle,
    line_ready: Handle,
}

/// The driver, leaked once in `run` before any other thread starts, never changed after.
static DRIVER: AtomicPtr<Driver> = AtomicPtr::new(core::ptr::null_mut());

fn driver() -> &'static Driver {
    let driver = DRIVER.load(Ordering::Acquire);
    assert!(!driver.is_null(), "the driver is set before the threads start");
    // Safety: a non-null DRIVER points at a leaked `Driver` that lives for the rest of the task
    // and is only accessed through shared references.
    unsafe { &*driver }
}

impl Driver {
    /// Drains the receive FIFO through the line editor, then echoes.
    fn drain(&self) {
        let mut echo = Vec::new();
        let mut signal = false;
        {
            let mut input = self.input.lock();
            for _ in 0..1024 {
                if self.uart.read(LINE_STATUS) & DATA_READY == 0 {
                    break;
                }
                let b = self.uart.read(DATA);
                input.byte(b, &mut echo);
            }
            signal |= input.reader && !input.complete.is_empty();
            if input.loopback {
                input.held_echo.extend_from_slice(&echo);
                echo.clear();
            }
        }
        if !echo.is_empty() {
            let _out = self.output.lock();
            self.uart.send(&echo);
        }
        if signal {
            let _ = sys::signal(self.line_ready, LINE_BIT);
        }
    }

    fn write(&self, bytes: &[u8]) {
        let _out = self.output.lock();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                self.uart.send(&bytes[start..i]);
                self.uart.send(b"\r\n");
                start = i + 1;
            }
        }
        self.uart.send(&bytes[start..]);
    }

    /// `ReadLine` (`until` = `None`), or `ReadLineFor` giving up at `until` (nanoseconds since
    /// boot).
    fn read_line(&self, badge: u64, offset: u64, until: Option<u64>) -> Response {
        if !self.buffers.lock().contains_key(&badge) {
            return Response::NoBuffer;
        }
        {
            let mut input = self.input.lock();
            if input.reader {
                return Response::Busy;
            }
            input.reader = true;
        }
        let line = loop {
            let next = {
                let mut input = self.input.lock();
                let next = input.complete.pop_front();
                if next.is_some() {
                    input.reader = false;
                }
                next
            };
            if let Some(line) = next {
                break line;
            }
            let mut wait = 100_000_000;
            if let Some(until) = until {
                let now = sys::time_now();
                if now >= until {
                    self.input.lock().reader = false;
                    return Response::NoLine;
                }
                wait = wait.min(until - now);
            }
            let _ = sys::wait(self.line_ready, wait);
        };
        let Some(line) = line else { return Response::Cancelled };
        let buffers = self.buffers.lock();
        let Some(buffer) = buffers.get(&badge) else { return Response::NoBuffer };
        match buffer.write(offset, &line) {
            Ok(()) => Response::Line { len: line.len() as u64 },
            Err(_) => Response::OutOfRange,
        }
    }

    /// Sends `bytes` to ourselves through the UART's loopback mode (a test of the receive path).
    fn inject(&self, bytes: &[u8]) -> Response {
        let out = self.output.lock();
        let before = {
            let mut input = self.input.lock();
            input.loopback = true;
            input.received
        };
        self.uart.write(MODEM_CONTROL, MODEM_NORMAL | LOOPBACK);
        self.uart.send(bytes);
        let deadline = sys::time_now() + 500_000_000;
        while self.input.lock().received < before + bytes.len() && sys::time_now() < deadline {
            sys::sleep(10_000_000);
        }
        // Let the transmitter finish before leaving loopback, so nothing leaks out.
        for _ in 0..100_000 {
            if self.uart.read(LINE_STATUS) & 0x40 != 0 {
                break;
            }
        }
        self.uart.write(MODEM_CONTROL, MODEM_NORMAL);
        let (echo, got) = {
            let mut input = self.input.lock();
            input.loopback = false;
            (core::mem::take(&mut input.held_echo), input.received - before)
        };
        self.uart.send(&echo);
        drop(out);
        if got >= bytes.len() {
            Response::Done
        } else {
            Response::Failed
        }
    }

    fn handle(&self, badge: u64, request: Request) -> Response {
        match request {
            Request::Write { len, bytes } => match bytes.get(..len as usize) {
                Some(b) => {
                    self.write(b);
                    Response::Done
                }
                None => Response::OutOfRange,
            },
            Request::Inject { len, bytes } => match bytes.get(..len as usize) {
                Some(b) => self.inject(b),
                None => Response::OutOfRange,
            },
            Request::OpenBuffer { len } => {
                let mut buffers = self.buffers.lock();
                if buffers.contains_key(&badge) {
                    return Response::Exists;
                }
                if len == 0 || len > BUFFER_MAX {
                    return Response::TooLarge;
                }
                let Ok(buffer) = SharedBuffer::create(len as usize) else { return Response::Failed };
                let Ok(copy) = buffer.share(rights::READ | rights::WRITE | rights::DUPLICATE) else {
                    return Response::Failed;
                };
                buffers.insert(badge, buffer);
                Response::Buffer { memory: Cap(copy), len }
            }
            Request::WriteBuffer { range } => {
                let mut data = Vec::new();
                {
                    let buffers = self.buffers.lock();
                    let Some(buffer) = buffers.get(&badge) else { return Response::NoBuffer };
                    if buffer.check(range).is_err() {
                        return Response::OutOfRange;
                    }
                    if data.try_reserve_exact(range.len as usize).is_err() {
                        return Response::Failed;
                    }
                    data.resize(range.len as usize, 0);
                    if buffer.read(range.offset, &mut data).is_err() {
                        return Response::OutOfRange;
                    }
                }
                self.write(&data);
                Response::Done
            }
            Request::Unread { range } => {
                let mut line = alloc::vec![0u8; (range.len as usize).min(LINE_MAX)];
                {
                    let buffers = self.buffers.lock();
                    let Some(buffer) = buffers.get(&badge) else { return Response::NoBuffer };
                    if range.len as usize > LINE_MAX {
                        return Response::TooLarge;
                    }
                    if buffer.check(range).is_err() || buffer.read(range.offset, &mut line).is_err() {
                        return Response::OutOfRange;
                    }
                }
                let mut input = self.input.lock();
                if input.complete.len() >= QUEUED_LINES {
                    return Response::Failed;
                }
                input.complete.push_front(Some(line));
                drop(input);
                let _ = sys::signal(self.line_ready, LINE_BIT);
                Response::Done
            }
            Request::ReadLine { offset } => self.read_line(badge, offset, None),
            Request::ReadLineFor { offset, wait_ms } => {
                let until = sys::time_now().saturating_add(wait_ms.saturating_mul(1_000_000));
                self.read_line(badge, offset, Some(until))
            }
        }
    }
}

extern "C" fn interrupts(_: u64) -> ! {
    let d = driver();
    loop {
        // The timeout is a safety net for an interrupt lost at the edge-triggered line.
        let _ = sys::wait(d.irq_notification, 100_000_000);
        d.drain();
        let _ = irq_ack(d.irq.0, d.irq.1);
        d.drain();
    }
}

extern "C" fn serve(endpoint: u64) -> ! {
    let error = Server::<Console>::new(endpoint as Handle).serve(|badge, request| driver().handle(badge, request));
    warn!("server thread stopped: {error}");
    sys::thread_exit()
}

fn main() -> i32 {
    rt::log::set_prefix("console");
    match run() {
        Ok(never) => never,
        Err(e) => {
            warn!("{e}");
            svc::exit(1)
        }
    }
}

fn run() -> Result<i32, &'static str> {
    let caps = svc::capabilities().map_err(|_| "init gave no capabilities")?;
    let (ports, base, count) = svc::first_ports(&caps).ok_or("no I/O ports in the manifest")?;
    if count < 8 {
        return Err("the UART needs 8 ports");
    }
    let irq = svc::first_irq(&caps).ok_or("no interrupt line in the manifest")?;
    let uart = Uart { ports, base };
    let irq_notification = sys::notification_create().map_err(|_| "no notification")?;
    let line_ready = sys::notification_create().map_err(|_| "no notification")?;
    // Receive interrupts only; FIFO on with a trigger level of one byte; OUT2 for the line.
    uart.write(INTERRUPT_ENABLE, 0);
    uart.write(FIFO_CONTROL, 0x07);
    uart.write(MODEM_CONTROL, MODEM_NORMAL);
    while uart.read(LINE_STATUS) & DATA_READY != 0 {
        uart.read(DATA);
    }
    irq_bind(irq.0, irq.1, irq_notification, IRQ_BIT).map_err(|_| "cannot bind the interrupt line")?;
    uart.write(INTERRUPT_ENABLE, RECEIVE_INTERRUPT);
    let driver = Driver {
        uart,
        output: SpinLock::new(()),
        input: SpinLock::new(Input::default()),
        buffers: SpinLock::new(BTreeMap::new()),
        irq,
        irq_notification,
        line_ready,
    };
    DRIVER.store(alloc::boxed::Box::leak(alloc::boxed::Box::new(driver)), Ordering::Release);
    let endpoint = sys::endpoint_create().map_err(|_| "no endpoint")?;
    start_thread(interrupts, 0)?;
    start_thread(serve, endpoint as u64)?;
    let names = svc::names().map_err(|_| "no name service")?;
    svc::register(&names, endpoint).map_err(|_| "cannot register as console")?;
    info!("serving COM at {base:#x}, interrupt line {}", irq.1);
    serve(endpoint as u64)
}

/// Starts `entry(arg)` on a new 16 KiB stack at the highest priority this task may use (its
/// manifest priority): the kernel refuses higher ones with `InvalidArgument`.
fn start_thread(entry: extern "C" fn(u64) -> !, arg: u64) -> Result<(), &'static str> {
    let stack = rt::stack(16 * 1024).ok_or("no stack")?;
    // At a function's entry rsp + 8 is 16-byte aligned (as if `call` pushed a return address).
    let top = ((stack.as_mut_ptr() as u64 + stack.len() as u64) & !15) - 8;
    for priority in (0..=62u64).rev() {
        let a = [entry as usize as u64, top, priority, arg, 0, 0, 0];
        match sys::syscall(abi::syscall::Sys::ThreadCreate, 0, a) {
            Ok(_) => return Ok(()),
            Err(sys::Error::InvalidArgument) => continue,
            Err(_) => return Err("cannot create a thread"),
        }
    }
    Err("cannot create a thread")
}
