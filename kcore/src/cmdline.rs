//! The kernel command line: the options the kernel understands and their parser.
//!
//! The line is a list of whitespace-separated words, each `name` or `name=value`. Every option
//! is documented in `docs/cmdline.md`. An unknown option, a bad value or an option given twice
//! is an error: a typo must never be silently ignored, because a test or a user would then
//! believe an option took effect.

use core::fmt;

/// How much the kernel prints on the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    const NAMES: &'static [(&'static str, LogLevel)] = &[
        ("error", LogLevel::Error),
        ("warn", LogLevel::Warn),
        ("info", LogLevel::Info),
        ("debug", LogLevel::Debug),
        ("trace", LogLevel::Trace),
    ];
}

/// A deliberate fault, to prove that faults are caught and reported (`crash=<kind>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashKind {
    /// A Rust `panic!`.
    Panic,
    /// A read of an unmapped address (#PF).
    PageFault,
    /// A write to the kernel's own text, which is mapped read-only (#PF, protection).
    WriteText,
    /// A jump into the kernel's data, which is mapped no-execute (#PF, instruction fetch).
    ExecData,
    /// `ud2` (#UD).
    InvalidOpcode,
    /// `int3` (#BP).
    Breakpoint,
    /// Unbounded recursion into the stack guard page (#DF through its own stack).
    StackOverflow,
}

impl CrashKind {
    const NAMES: &'static [(&'static str, CrashKind)] = &[
        ("panic", CrashKind::Panic),
        ("page_fault", CrashKind::PageFault),
        ("write_text", CrashKind::WriteText),
        ("exec_data", CrashKind::ExecData),
        ("invalid_opcode", CrashKind::InvalidOpcode),
        ("breakpoint", CrashKind::Breakpoint),
        ("stack_overflow", CrashKind::StackOverflow),
    ];
}

/// What the kernel does once bring-up is complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnReady {
    /// Start the first task, `init` (the default).
    Init,
    /// Start nothing; stay up serving interrupts.
    Idle,
    /// Start nothing; check that the timer ticks, then shut the machine down successfully.
    Exit,
}

impl OnReady {
    const NAMES: &'static [(&'static str, OnReady)] =
        &[("init", OnReady::Init), ("idle", OnReady::Idle), ("exit", OnReady::Exit)];
}

/// The first task's program when `init=` does not say.
pub const DEFAULT_INIT: &str = "/bin/init";

/// The parsed kernel command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options<'a> {
    pub log: LogLevel,
    pub crash: Option<CrashKind>,
    pub on_ready: OnReady,
    /// The path in the boot archive of the first task's program.
    pub init: &'a str,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options { log: LogLevel::Info, crash: None, on_ready: OnReady::Init, init: DEFAULT_INIT }
    }
}

/// Every option name, for error messages.
pub const OPTION_NAMES: &[&str] = &["log", "crash", "on_ready", "init"];

/// Why a command line was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineError<'a> {
    /// The option name is not one the kernel knows.
    UnknownOption(&'a str),
    /// The option needs a value (`name=value`) and has none.
    MissingValue(&'static str),
    /// The value is not one of the allowed ones.
    BadValue { option: &'static str, value: &'a str },
    /// The option appears more than once.
    Duplicate(&'static str),
    /// The option needs an absolute path.
    BadPath { option: &'static str, value: &'a str },
}

impl fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineError::UnknownOption(name) => {
                write!(f, "unknown kernel command-line option `{name}` (known options:")?;
                for known in OPTION_NAMES {
                    write!(f, " {known}")?;
                }
                write!(f, ")")
            }
            CmdlineError::MissingValue(name) => write!(f, "option `{name}` needs a value: `{name}=<value>`"),
            CmdlineError::BadValue { option, value } => {
                write!(f, "option `{option}` does not accept `{value}` (allowed:")?;
                fn names<T>(f: &mut fmt::Formatter<'_>, table: &[(&str, T)]) -> fmt::Result {
                    table.iter().try_for_each(|(n, _)| write!(f, " {n}"))
                }
                match *option {
                    "log" => names(f, LogLevel::NAMES)?,
                    "crash" => names(f, CrashKind::NAMES)?,
                    _ => names(f, OnReady::NAMES)?,
                }
                write!(f, ")")
            }
            CmdlineError::Duplicate(name) => write!(f, "option `{name}` is given more than once"),
            CmdlineError::BadPath { option, value } => {
                write!(f, "option `{option}` needs an absolute path such as /bin/init, not `{value}`")
            }
        }
    }
}

fn lookup<'a, T: Copy>(
    option: &'static str,
    value: Option<&'a str>,
    table: &[(&'static str, T)],
) -> Result<T, CmdlineError<'a>> {
    let value = value.ok_or(CmdlineError::MissingValue(option))?;
    table.iter().find(|(name, _)| *name == value).map(|(_, v)| *v).ok_or(CmdlineError::BadValue { option, value })
}

impl<'a> Options<'a> {
    /// Parses a kernel command line. The empty line gives the defaults.
    pub fn parse(line: &'a str) -> Result<Options<'a>, CmdlineError<'a>> {
        let mut options = Options::default();
        let mut seen = [false; OPTION_NAMES.len()];
        for word in line.split_ascii_whitespace() {
            let (name, value) = match word.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (word, None),
            };
            let index = OPTION_NAMES.iter().position(|n| *n == name).ok_or(CmdlineError::UnknownOption(name))?;
            let name = OPTION_NAMES[index];
            if core::mem::replace(&mut seen[index], true) {
                return Err(CmdlineError::Duplicate(name));
            }
            match name {
                "log" => options.log = lookup(name, value, LogLevel::NAMES)?,
                "crash" => options.crash = Some(lookup(name, value, CrashKind::NAMES)?),
                "on_ready" => options.on_ready = lookup(name, value, OnReady::NAMES)?,
                "init" => match value {
                    Some(path) if path.starts_with('/') && path.len() > 1 => options.init = path,
                    Some(path) => return Err(CmdlineError::BadPath { option: name, value: path }),
                    None => return Err(CmdlineError::MissingValue(name)),
                },
                _ => unreachable!("every name in OPTION_NAMES is handled"),
            }
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn empty_line_gives_defaults() {
        assert_eq!(Options::parse("").unwrap(), Options::default());
        assert_eq!(Options::parse("  \t ").unwrap(), Options::default());
    }

    #[test]
    fn parses_every_option() {
        let o = Options::parse("log=debug  crash=page_fault on_ready=exit init=/bin/test").unwrap();
        assert_eq!(
            o,
            Options {
                log: LogLevel::Debug,
                crash: Some(CrashKind::PageFault),
                on_ready: OnReady::Exit,
                init: "/bin/test"
            }
        );
    }

    #[test]
    fn bad_value_lists_the_allowed_values() {
        let e = Options::parse("crash=everything").unwrap_err().to_string();
        assert!(e.contains("`everything`") && e.contains("panic page_fault write_text"), "{e}");
        let e = Options::parse("on_ready=later").unwrap_err().to_string();
        assert!(e.ends_with("(allowed: init idle exit)"), "{e}");
        assert_eq!(Options::parse("init=bin/x"), Err(CmdlineError::BadPath { option: "init", value: "bin/x" }));
        assert_eq!(Options::parse("init=/"), Err(CmdlineError::BadPath { option: "init", value: "/" }));
    }

    #[test]
    fn rejects_unknown_option_with_its_name() {
        let e = Options::parse("log=info bogus=1").unwrap_err();
        assert_eq!(e, CmdlineError::UnknownOption("bogus"));
        assert!(e.to_string().contains("`bogus`"));
        assert!(e.to_string().contains("log crash on_ready init"));
    }

    #[test]
    fn rejects_bad_and_missing_values_and_duplicates() {
        assert!(matches!(Options::parse("log=loud"), Err(CmdlineError::BadValue { option: "log", value: "loud", .. })));
        assert_eq!(Options::parse("log"), Err(CmdlineError::MissingValue("log")));
        assert!(matches!(Options::parse("log="), Err(CmdlineError::BadValue { value: "", .. })));
        assert_eq!(Options::parse("log=info log=debug"), Err(CmdlineError::Duplicate("log")));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(line in ".{0,200}") {
            let _ = Options::parse(&line);
        }
    }
}
