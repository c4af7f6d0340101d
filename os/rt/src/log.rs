//! Logging: a backend for the `log` crate that prints to the console.
//!
//! The runtime installs the logger before `main` with the level `Info`; [`init`] changes the
//! level and [`set_prefix`] names the program. A record prints as one line
//! `[<LEVEL>] <prefix>: <message>` (`[INFO] kv: ready`), or `[<LEVEL>] <message>` while the
//! prefix is empty. Lines up to [`LINE_MAX`] bytes go to the console in one write, so lines of
//! threads and tasks do not interleave; longer ones are written in pieces.
//!
//! The `log` macros are re-exported here, so programs need no dependency of their own:
//! `rt::log::info!("{} keys", n)`.

use crate::sync::SpinLock;
pub use ::log::{debug, error, info, log_enabled, trace, warn, Level, LevelFilter};
use core::fmt::Write;

/// The longest line written in one piece.
pub const LINE_MAX: usize = 512;
/// The longest prefix (longer ones are cut at a character boundary).
pub const PREFIX_MAX: usize = 32;

struct Prefix {
    bytes: [u8; PREFIX_MAX],
    len: usize,
}

static PREFIX: SpinLock<Prefix> = SpinLock::new(Prefix { bytes: [0; PREFIX_MAX], len: 0 });

struct ConsoleLogger;

static LOGGER: ConsoleLogger = ConsoleLogger;

/// Installs the logger (done by the runtime at startup) and sets the most verbose level shown.
pub fn init(level: LevelFilter) {
    // Fails only when a logger is installed already, which is then this one.
    let _ = ::log::set_logger(&LOGGER);
    ::log::set_max_level(level);
}

/// Sets the prefix of this task's log lines (usually the program's name).
pub fn set_prefix(prefix: &str) {
    let mut cut = prefix.len().min(PREFIX_MAX);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut p = PREFIX.lock();
    p.bytes[..cut].copy_from_slice(&prefix.as_bytes()[..cut]);
    p.len = cut;
}

/// A line being assembled: up to `LINE_MAX` bytes in a buffer, then flushed to the console in
/// one system call, so lines of different tasks never interleave.
pub(crate) struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Line {
    pub(crate) fn new() -> Line {
        Line { buf: [0; LINE_MAX], len: 0 }
    }

    pub(crate) fn flush(&mut self) {
        // The buffer holds only whole characters (see `write_str`).
        if let Ok(text) = core::str::from_utf8(&self.buf[..self.len]) {
            let _ = crate::Console.write_str(text);
        }
        self.len = 0;
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            let mut utf8 = [0; 4];
            let bytes = c.encode_utf8(&mut utf8).as_bytes();
            if self.len + bytes.len() > LINE_MAX {
                self.flush();
            }
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
        Ok(())
    }
}

impl ::log::Log for ConsoleLogger {
    fn enabled(&self, metadata: &::log::Metadata) -> bool {
        metadata.level() <= ::log::max_level()
    }

    fn log(&self, record: &::log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = Line::new();
        let _ = write!(line, "[{}] ", record.level());
        {
            let p = PREFIX.lock();
            if p.len > 0 {
                // The prefix was cut at a character boundary when set.
                let _ = line.write_str(core::str::from_utf8(&p.bytes[..p.len]).unwrap_or("?"));
                let _ = line.write_str(": ");
            }
        }
        let _ = writeln!(line, "{}", record.args());
        line.flush();
    }

    fn flush(&self) {}
}
