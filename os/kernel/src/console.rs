//! The kernel console: formatted output on the serial port, kept also in the kernel log ring
//! (`LogRead`, the shell's `dmesg`), and the `log` backend that filters by the level chosen on
//! the command line (`log=`).

use crate::arch::serial::Serial;
use core::fmt::Write;
use kcore::logring::LogRing;
use spin::Mutex;

static CONSOLE: Mutex<Option<Serial>> = Mutex::new(None);
/// The last 16 KiB printed, for `LogRead`.
static LOG: Mutex<LogRing<LOG_BYTES>> = Mutex::new(LogRing::new());
const LOG_BYTES: usize = 16 * 1024;

/// Writes into the log ring what is formatted through it.
struct ToRing<'a>(&'a mut LogRing<LOG_BYTES>);

impl Write for ToRing<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.push(s.as_bytes());
        Ok(())
    }
}

/// Copies log bytes from position `from`: the position of the first byte copied, the count,
/// and the end of the log.
pub fn log_read(from: u64, out: &mut [u8]) -> (u64, usize, u64) {
    let ring = LOG.lock();
    let (start, n) = ring.read(from, out);
    (start, n, ring.end())
}

/// Initialises the serial port and installs the logger at level `info`.
pub fn init() {
    *CONSOLE.lock() = Some(Serial::init());
    // A second call would fail only if a logger was already set, which cannot happen here.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Sets the most detailed level that is printed.
pub fn set_level(level: kcore::cmdline::LogLevel) {
    use kcore::cmdline::LogLevel as L;
    log::set_max_level(match level {
        L::Error => log::LevelFilter::Error,
        L::Warn => log::LevelFilter::Warn,
        L::Info => log::LevelFilter::Info,
        L::Debug => log::LevelFilter::Debug,
        L::Trace => log::LevelFilter::Trace,
    });
}

/// Prints to the console.
pub fn print(args: core::fmt::Arguments) {
    if let Some(serial) = CONSOLE.lock().as_mut() {
        let _ = serial.write_fmt(args);
    }
    let _ = ToRing(&mut LOG.lock()).write_fmt(args);
}

/// Prints from a context that may have interrupted a holder of the console lock (a panic or a
/// kernel fault, after which the machine stops): takes the port without the lock.
pub fn print_emergency(args: core::fmt::Arguments) {
    let _ = Serial.write_fmt(args);
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

struct Logger;
static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let level = match record.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warn ",
                log::Level::Info => "info ",
                log::Level::Debug => "debug",
                log::Level::Trace => "trace",
            };
            print(format_args!("[{level}] {}\n", record.args()));
        }
    }

    fn flush(&self) {}
}
