//! The parser of the service manifest (docs/manifest.md): bytes in, a checked [`Manifest`] or
//! every [`Error`] found, each naming its line. It never panics, whatever the input.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The longest service name (it is also the task's name and the name-service key).
pub const NAME_MAX: usize = 16;
/// The longest line, in bytes.
pub const LINE_MAX: usize = 256;
/// The longest program path.
pub const PATH_MAX: usize = 128;
/// The longest `arg` line value, in bytes, and the most `arg` lines of one service.
pub const ARG_MAX: usize = 256;
pub const ARGS_MAX: usize = 32;
/// The most services a manifest may list.
pub const SERVICES_MAX: usize = 32;
/// The most capabilities one service may get.
pub const CAPABILITIES_MAX: usize = 16;
/// The highest priority a service may have (init runs at 63, above every service).
pub const PRIORITY_MAX: u8 = 62;
/// Quota bounds: a service needs room for its task, its program and its stack.
pub const QUOTA_MIN: u64 = 256 * 1024;
pub const QUOTA_MAX: u64 = 1 << 30;
/// The highest interrupt line (the I/O APIC's inputs 0-23).
pub const IRQ_MAX: u8 = 23;
/// The longest backoff, in milliseconds (one hour).
pub const BACKOFF_MAX_MS: u64 = 3_600_000;
/// After this many errors the parser stops and says so.
pub const ERRORS_MAX: usize = 32;
/// The name of the name service: the service every `endpoint` goes through.
pub const NAME_SERVICE: &str = "names";

/// Defaults of a service that does not say otherwise.
pub const DEFAULT_PRIORITY: u8 = 10;
pub const DEFAULT_QUOTA: u64 = 1 << 20;
pub const DEFAULT_BACKOFF: Backoff = Backoff { initial_ms: 10, max_ms: 1000 };

const PAGE: u64 = 4096;
/// Device memory lies below 4 GiB.
const DEVICE_MEMORY_END: u64 = 1 << 32;

/// When init starts a service again after it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Whenever it ends.
    Always,
    /// When it ends without reporting a clean exit (a fault, a panic, a non-zero status, killed).
    OnFailure,
    /// Never.
    Never,
}

/// The delay before a restart: `initial_ms` after the first failure, doubled after each
/// further one that follows quickly, at most `max_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial_ms: u64,
    pub max_ms: u64,
}

/// A capability a service gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capability {
    /// I/O ports `first` to `last` (inclusive).
    Ports { first: u16, last: u16 },
    /// One interrupt line.
    Irq { line: u8 },
    /// Device memory (physical, page-aligned).
    DeviceMemory { base: u64, len: u64 },
    /// The right to look up `service` in the name service (`console` is `endpoint console`).
    Endpoint { service: String },
    /// The boot archive, read-only.
    BootArchive,
    /// The console with the right to read the kernel log (`LogRead`).
    KernelLog,
}

/// A capability and the line that grants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub line: usize,
    pub capability: Capability,
    /// `shared` on a `ports` or `device-memory` line: other services whose lines also say
    /// `shared` may hold the same range (the PCI bus, until a PCI service hands out devices).
    pub shared: bool,
}

/// One service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// The line of its `service` keyword.
    pub line: usize,
    pub program: String,
    pub priority: u8,
    pub quota: u64,
    pub restart: Restart,
    pub backoff: Backoff,
    pub grants: Vec<Grant>,
    /// init shuts the machine down once this service has ended for good.
    pub shutdown_on_exit: bool,
    /// May ask init to stop and restart services.
    pub admin: bool,
    /// Its `arg` lines, in order: configuration the program reads with `svc::arguments()`.
    pub args: Vec<String>,
}

/// A checked manifest: the services in the order they are listed (init starts them so).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    pub services: Vec<Service>,
}

impl Manifest {
    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// What is wrong with a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    NotUtf8,
    LineTooLong,
    UnknownKeyword(String),
    /// A service setting before the first `service` line.
    OutsideService(&'static str),
    MissingValue(&'static str),
    ExtraValue(&'static str, String),
    BadName(String),
    BadPath(String),
    BadNumber(String),
    OutOfRange {
        what: &'static str,
        value: String,
        allowed: &'static str,
    },
    BadRestart(String),
    BadDuration(String),
    BackoffOrder,
    Repeated(&'static str),
    DuplicateService {
        name: String,
        first_line: usize,
    },
    MissingProgram(String),
    UnknownService(String),
    EndpointToItself,
    NoNameService,
    Overlap {
        what: &'static str,
        other: String,
    },
    TooManyServices,
    TooManyCapabilities,
    TooManyErrors,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotUtf8 => write!(f, "not UTF-8 text"),
            Problem::LineTooLong => write!(f, "line longer than {LINE_MAX} bytes"),
            Problem::UnknownKeyword(k) => write!(
                f,
                "unknown keyword `{k}` (allowed: service program priority quota restart backoff ports irq \
                 device-memory endpoint console boot-archive kernel-log admin arg shutdown-on-exit)"
            ),
            Problem::OutsideService(k) => write!(f, "`{k}` before the first `service` line"),
            Problem::MissingValue(k) => write!(f, "`{k}` needs a value"),
            Problem::ExtraValue(k, v) => write!(f, "unexpected `{v}` after `{k}`"),
            Problem::BadName(n) => {
                write!(f, "bad service name `{n}` (1 to {NAME_MAX} of a-z 0-9 - _, starting with a letter)")
            }
            Problem::BadPath(p) => write!(f, "bad program path `{p}` (absolute, at most {PATH_MAX} bytes)"),
            Problem::BadNumber(n) => write!(f, "`{n}` is not a number (decimal or 0x hex)"),
            Problem::OutOfRange { what, value, allowed } => write!(f, "{what} `{value}` out of range ({allowed})"),
            Problem::BadRestart(r) => write!(f, "restart policy `{r}` (allowed: always on-failure never)"),
            Problem::BadDuration(d) => write!(f, "`{d}` is not a duration (like 10ms or 2s)"),
            Problem::BackoffOrder => write!(f, "the initial backoff is longer than the maximum"),
            Problem::Repeated(k) => write!(f, "`{k}` given twice for this service"),
            Problem::DuplicateService { name, first_line } => {
                write!(f, "service `{name}` is already defined on line {first_line}")
            }
            Problem::MissingProgram(s) => write!(f, "service `{s}` has no `program` line"),
            Problem::UnknownService(s) => write!(f, "endpoint to `{s}`, which is not a service of this manifest"),
            Problem::EndpointToItself => write!(f, "a service needs no endpoint to itself"),
            Problem::NoNameService => {
                write!(f, "endpoints go through the name service, but no service is called `{NAME_SERVICE}`")
            }
            Problem::Overlap { what, other } => write!(f, "{what} overlap those of service `{other}`"),
            Problem::TooManyServices => write!(f, "more than {SERVICES_MAX} services"),
            Problem::TooManyCapabilities => write!(f, "more than {CAPABILITIES_MAX} capabilities for one service"),
            Problem::TooManyErrors => write!(f, "more than {ERRORS_MAX} errors, stopping"),
        }
    }
}

/// A problem and its line (counted from 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub line: usize,
    pub problem: Problem,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

/// Input quoted in an error: at most 40 characters, control characters replaced.
fn quote(s: &str) -> String {
    let mut out: String = s.chars().take(40).map(|c| if c.is_control() { '?' } else { c }).collect();
    if s.chars().count() > 40 {
        out.push_str("...");
    }
    out
}

struct Errors(Vec<Error>);

impl Errors {
    fn push(&mut self, line: usize, problem: Problem) {
        if self.0.len() < ERRORS_MAX {
            self.0.push(Error { line, problem });
        } else if self.0.len() == ERRORS_MAX {
            self.0.push(Error { line, problem: Problem::TooManyErrors });
        }
    }

    fn full(&self) -> bool {
        self.0.len() > ERRORS_MAX
    }
}

/// Parses and checks a manifest.
pub fn parse(bytes: &[u8]) -> Result<Manifest, Vec<Error>> {
    let mut errors = Errors(Vec::new());
    let mut services: Vec<Service> = Vec::new();
    // Which settings the current service has seen.
    let mut seen: Vec<&'static str> = Vec::new();
    let mut too_many = false;
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        if errors.full() {
            break;
        }
        let line = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.len() > LINE_MAX {
            errors.push(line, Problem::LineTooLong);
            continue;
        }
        let Ok(text) = core::str::from_utf8(raw) else {
            errors.push(line, Problem::NotUtf8);
            continue;
        };
        let text = text.split('#').next().unwrap_or("");
        let mut words = text.split_ascii_whitespace();
        let Some(keyword) = words.next() else { continue };
        let values: Vec<&str> = words.collect();
        if keyword == "service" {
            seen.clear();
            let Some(name) = one_value("service", &values, line, &mut errors) else { continue };
            if !valid_name(name) {
                errors.push(line, Problem::BadName(quote(name)));
            }
            if services.len() == SERVICES_MAX {
                if !too_many {
                    errors.push(line, Problem::TooManyServices);
                }
                too_many = true;
                continue;
            }
            services.push(Service {
                name: String::from(name),
                line,
                program: String::new(),
                priority: DEFAULT_PRIORITY,
                quota: DEFAULT_QUOTA,
                restart: Restart::OnFailure,
                backoff: DEFAULT_BACKOFF,
                grants: Vec::new(),
                shutdown_on_exit: false,
                admin: false,
                args: Vec::new(),
            });
            continue;
        }
        let Some(keyword) = KEYWORDS.iter().copied().find(|k| *k == keyword) else {
            errors.push(line, Problem::UnknownKeyword(quote(keyword)));
            continue;
        };
        if too_many {
            continue;
        }
        let Some(service) = services.last_mut() else {
            errors.push(line, Problem::OutsideService(keyword));
            continue;
        };
        if SINGLE.contains(&keyword) {
            if seen.contains(&keyword) {
                errors.push(line, Problem::Repeated(keyword));
                continue;
            }
            seen.push(keyword);
        }
        if let Err(problem) = setting(service, keyword, &values, line) {
            errors.push(line, problem);
        }
    }
    check_whole(&services, &mut errors);
    if errors.0.is_empty() {
        Ok(Manifest { services })
    } else {
        Err(errors.0)
    }
}

/// Keywords of a service's settings.
const KEYWORDS: &[&str] = &[
    "program",
    "priority",
    "quota",
    "restart",
    "backoff",
    "ports",
    "irq",
    "device-memory",
    "endpoint",
    "console",
    "boot-archive",
    "kernel-log",
    "admin",
    "arg",
    "shutdown-on-exit",
];
/// Settings a service may give once.
const SINGLE: &[&str] = &["program", "priority", "quota", "restart", "backoff", "shutdown-on-exit", "admin"];

fn one_value<'a>(keyword: &'static str, values: &[&'a str], line: usize, errors: &mut Errors) -> Option<&'a str> {
    match values {
        [] => {
            errors.push(line, Problem::MissingValue(keyword));
            None
        }
        [value] => Some(value),
        [_, extra, ..] => {
            errors.push(line, Problem::ExtraValue(keyword, quote(extra)));
            None
        }
    }
}

fn exactly<'a, const N: usize>(keyword: &'static str, values: &[&'a str]) -> Result<[&'a str; N], Problem> {
    if values.len() < N {
        return Err(Problem::MissingValue(keyword));
    }
    if values.len() > N {
        return Err(Problem::ExtraValue(keyword, quote(values[N])));
    }
    let mut out = [""; N];
    out.copy_from_slice(values);
    Ok(out)
}

fn setting(service: &mut Service, keyword: &'static str, values: &[&str], line: usize) -> Result<(), Problem> {
    // `shared` at the end of a `ports` or `device-memory` line.
    let (values, shared) = match values {
        [rest @ .., "shared"] if matches!(keyword, "ports" | "device-memory") => (rest, true),
        _ => (values, false),
    };
    let grant = |service: &mut Service, capability| {
        if service.grants.len() == CAPABILITIES_MAX {
            return Err(Problem::TooManyCapabilities);
        }
        service.grants.push(Grant { line, capability, shared });
        Ok(())
    };
    match keyword {
        "program" => {
            let [path] = exactly(keyword, values)?;
            // Kept even when bad, so the service is not also reported as having no program.
            service.program = String::from(path);
            if !path.starts_with('/') || path.len() > PATH_MAX || !path.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Problem::BadPath(quote(path)));
            }
        }
        "priority" => {
            let [value] = exactly(keyword, values)?;
            let n = number(value)?;
            if n > PRIORITY_MAX as u64 {
                return Err(Problem::OutOfRange { what: "priority", value: quote(value), allowed: "0 to 62" });
            }
            service.priority = n as u8;
        }
        "quota" => {
            let [value] = exactly(keyword, values)?;
            let q = size(value)?;
            if !(QUOTA_MIN..=QUOTA_MAX).contains(&q) {
                return Err(Problem::OutOfRange { what: "quota", value: quote(value), allowed: "256K to 1G" });
            }
            service.quota = q;
        }
        "restart" => {
            let [value] = exactly(keyword, values)?;
            service.restart = match value {
                "always" => Restart::Always,
                "on-failure" => Restart::OnFailure,
                "never" => Restart::Never,
                other => return Err(Problem::BadRestart(quote(other))),
            };
        }
        "backoff" => {
            let [initial, max] = exactly(keyword, values)?;
            let (initial_ms, max_ms) = (duration(initial)?, duration(max)?);
            if initial_ms > max_ms {
                return Err(Problem::BackoffOrder);
            }
            service.backoff = Backoff { initial_ms, max_ms };
        }
        "ports" => {
            let [range] = exactly(keyword, values)?;
            let (first, last) = match range.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => (number(range)?, number(range)?),
            };
            if first > last || last > 0xffff {
                return Err(Problem::OutOfRange {
                    what: "port range",
                    value: quote(range),
                    allowed: "0 to 0xffff, first <= last",
                });
            }
            grant(service, Capability::Ports { first: first as u16, last: last as u16 })?;
        }
        "irq" => {
            let [value] = exactly(keyword, values)?;
            let n = number(value)?;
            if n > IRQ_MAX as u64 {
                return Err(Problem::OutOfRange { what: "interrupt line", value: quote(value), allowed: "0 to 23" });
            }
            grant(service, Capability::Irq { line: n as u8 })?;
        }
        "device-memory" => {
            let [base, len] = exactly(keyword, values)?;
            let (b, l) = (number(base)?, size(len)?);
            let allowed = "page-aligned, not empty, below 4 GiB";
            if b % PAGE != 0 || b >= DEVICE_MEMORY_END {
                return Err(Problem::OutOfRange { what: "device memory base", value: quote(base), allowed });
            }
            if l == 0 || l % PAGE != 0 || l > DEVICE_MEMORY_END - b {
                return Err(Problem::OutOfRange { what: "device memory length", value: quote(len), allowed });
            }
            grant(service, Capability::DeviceMemory { base: b, len: l })?;
        }
        "endpoint" => {
            let [name] = exactly(keyword, values)?;
            if !valid_name(name) {
                return Err(Problem::BadName(quote(name)));
            }
            grant(service, Capability::Endpoint { service: String::from(name) })?;
        }
        "console" => {
            exactly::<0>(keyword, values)?;
            grant(service, Capability::Endpoint { service: String::from("console") })?;
        }
        "boot-archive" => {
            exactly::<0>(keyword, values)?;
            grant(service, Capability::BootArchive)?;
        }
        "kernel-log" => {
            exactly::<0>(keyword, values)?;
            grant(service, Capability::KernelLog)?;
        }
        "admin" => {
            exactly::<0>(keyword, values)?;
            service.admin = true;
        }
        "arg" => {
            if values.is_empty() {
                return Err(Problem::MissingValue(keyword));
            }
            let text = values.join(" ");
            if text.len() > ARG_MAX {
                return Err(Problem::OutOfRange {
                    what: "argument length",
                    value: quote(&text),
                    allowed: "1 to 256 bytes",
                });
            }
            if service.args.len() >= ARGS_MAX {
                return Err(Problem::OutOfRange {
                    what: "arguments",
                    value: quote(&text),
                    allowed: "at most 32 per service",
                });
            }
            service.args.push(text);
        }
        "shutdown-on-exit" => {
            exactly::<0>(keyword, values)?;
            service.shutdown_on_exit = true;
        }
        _ => return Err(Problem::UnknownKeyword(quote(keyword))),
    }
    Ok(())
}

/// Checks across services: names, programs, endpoints, and devices given to two services.
fn check_whole(services: &[Service], errors: &mut Errors) {
    for (i, s) in services.iter().enumerate() {
        if let Some(first) = services[..i].iter().find(|o| o.name == s.name) {
            errors.push(s.line, Problem::DuplicateService { name: quote(&s.name), first_line: first.line });
        }
        if s.program.is_empty() {
            errors.push(s.line, Problem::MissingProgram(quote(&s.name)));
        }
        for (j, g) in s.grants.iter().enumerate() {
            match &g.capability {
                Capability::Endpoint { service } => {
                    if *service == s.name {
                        errors.push(g.line, Problem::EndpointToItself);
                    } else if !services.iter().any(|o| o.name == *service) {
                        errors.push(g.line, Problem::UnknownService(quote(service)));
                    } else if !services.iter().any(|o| o.name == NAME_SERVICE) {
                        errors.push(g.line, Problem::NoNameService);
                    }
                }
                capability => {
                    // Earlier grants of this service, then grants of earlier services.
                    let earlier = s.grants[..j]
                        .iter()
                        .map(|o| (s, o))
                        .chain(services[..i].iter().flat_map(|o| o.grants.iter().map(move |og| (o, og))));
                    for (other, og) in earlier.filter(|(_, og)| !(g.shared && og.shared)) {
                        if let Some(what) = overlap(capability, &og.capability) {
                            errors.push(g.line, Problem::Overlap { what, other: quote(&other.name) });
                            break;
                        }
                    }
                }
            }
        }
    }
}

fn overlap(a: &Capability, b: &Capability) -> Option<&'static str> {
    match (a, b) {
        (Capability::Ports { first: f1, last: l1 }, Capability::Ports { first: f2, last: l2 }) => {
            (f1 <= l2 && f2 <= l1).then_some("I/O ports")
        }
        (Capability::Irq { line: a }, Capability::Irq { line: b }) => (a == b).then_some("interrupt lines"),
        (Capability::DeviceMemory { base: b1, len: n1 }, Capability::DeviceMemory { base: b2, len: n2 }) => {
            (*b1 < b2 + n2 && *b2 < b1 + n1).then_some("device memory ranges")
        }
        _ => None,
    }
}

/// A service name: 1 to `NAME_MAX` of `a-z 0-9 - _`, starting with a letter.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= NAME_MAX
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
}

/// A decimal or `0x` hexadecimal number.
fn number(text: &str) -> Result<u64, Problem> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(Problem::BadNumber(quote(text)));
    }
    u64::from_str_radix(digits, radix).map_err(|_| Problem::BadNumber(quote(text)))
}

/// A size: a number of bytes, or with `K`, `M` or `G` (binary multiples).
fn size(text: &str) -> Result<u64, Problem> {
    let (digits, unit) = match text.as_bytes().last() {
        Some(b'K') => (&text[..text.len() - 1], 1 << 10),
        Some(b'M') => (&text[..text.len() - 1], 1 << 20),
        Some(b'G') => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    number(digits)?.checked_mul(unit).ok_or_else(|| Problem::BadNumber(quote(text)))
}

/// A duration in milliseconds: `<n>ms` or `<n>s`, 1 ms to an hour.
fn duration(text: &str) -> Result<u64, Problem> {
    let bad = || Problem::BadDuration(quote(text));
    let ms = if let Some(n) = text.strip_suffix("ms") {
        number(n).map_err(|_| bad())?
    } else if let Some(n) = text.strip_suffix('s') {
        number(n).map_err(|_| bad())?.checked_mul(1000).ok_or_else(bad)?
    } else {
        return Err(bad());
    };
    if ms == 0 || ms > BACKOFF_MAX_MS {
        return Err(Problem::OutOfRange { what: "backoff", value: quote(text), allowed: "1ms to 3600s" });
    }
    Ok(ms)
}

/// Renders a problem list as lines, for the console.
pub fn report(errors: &[Error]) -> Vec<String> {
    errors.iter().map(|e| format!("{e}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const GOOD: &str = "\
# the system services
service names
    program /bin/svc_names
    priority 40
    restart always

service console   # the UART
    program /bin/svc_console
    quota 512K
    restart on-failure
    backoff 5ms 2s
    ports 0x3f8-0x3ff
    irq 4

service client
    program /bin/client
    console
    endpoint names
    device-memory 0xfd000000 4K
    ports 0x80
    boot-archive
    kernel-log
    admin
    arg address=10.0.2.15/24
    arg  two   words
    shutdown-on-exit
    restart never
";

    #[test]
    fn a_good_manifest_parses() {
        let m = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(m.services.len(), 3);
        let names = m.service("names").unwrap();
        assert_eq!((names.line, names.priority, names.quota, names.restart), (2, 40, DEFAULT_QUOTA, Restart::Always));
        let console = m.service("console").unwrap();
        assert_eq!(console.backoff, Backoff { initial_ms: 5, max_ms: 2000 });
        assert_eq!(console.quota, 512 * 1024);
        assert_eq!(
            console.grants,
            [
                Grant { line: 12, capability: Capability::Ports { first: 0x3f8, last: 0x3ff }, shared: false },
                Grant { line: 13, capability: Capability::Irq { line: 4 }, shared: false },
            ]
        );
        let client = m.service("client").unwrap();
        assert!(client.shutdown_on_exit);
        assert_eq!(client.restart, Restart::Never);
        assert_eq!(client.grants[0].capability, Capability::Endpoint { service: "console".into() });
        assert_eq!(client.grants[2].capability, Capability::DeviceMemory { base: 0xfd00_0000, len: 4096 });
        assert_eq!(client.grants[3].capability, Capability::Ports { first: 0x80, last: 0x80 });
        assert_eq!(client.grants[4].capability, Capability::BootArchive);
        assert_eq!(client.grants[5].capability, Capability::KernelLog);
        assert!(client.admin && !console.admin);
        assert_eq!(client.args, ["address=10.0.2.15/24", "two words"]);
    }

    #[test]
    fn empty_and_comment_only_manifests_have_no_services() {
        assert_eq!(parse(b"").unwrap().services, []);
        assert_eq!(parse(b"# nothing\n\n   \r\n").unwrap().services, []);
    }

    fn errors(text: &str) -> Vec<String> {
        parse(text.as_bytes()).unwrap_err().iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn each_error_names_its_line() {
        assert_eq!(errors("program /bin/x"), ["line 1: `program` before the first `service` line"]);
        assert_eq!(
            errors("service a\n program /bin/a\n frobnicate 1"),
            ["line 3: unknown keyword `frobnicate` (allowed: service program priority quota restart backoff ports irq device-memory endpoint console boot-archive kernel-log admin arg shutdown-on-exit)"]
        );
        assert_eq!(
            errors("service a\n program /bin/a\n priority 63"),
            ["line 3: priority `63` out of range (0 to 62)"]
        );
        assert_eq!(
            errors("service a\n program /bin/a\n priority x"),
            ["line 3: `x` is not a number (decimal or 0x hex)"]
        );
        assert_eq!(errors("service a\n program /bin/a\n quota 1K"), ["line 3: quota `1K` out of range (256K to 1G)"]);
        assert_eq!(
            errors("service a\n program /bin/a\n restart sometimes"),
            ["line 3: restart policy `sometimes` (allowed: always on-failure never)"]
        );
        assert_eq!(
            errors("service a\n program /bin/a\n backoff 2s 1s"),
            ["line 3: the initial backoff is longer than the maximum"]
        );
        assert_eq!(
            errors("service a\n program /bin/a\n backoff 10 1s"),
            ["line 3: `10` is not a duration (like 10ms or 2s)"]
        );
        assert_eq!(
            errors("service a\n program /bin/a\n irq 24"),
            ["line 3: interrupt line `24` out of range (0 to 23)"]
        );
        assert_eq!(errors("service a\n program /bin/a\n irq"), ["line 3: `irq` needs a value"]);
        assert_eq!(errors("service a\n program /bin/a\n irq 1 2"), ["line 3: unexpected `2` after `irq`"]);
        assert_eq!(
            errors("service a\n program /bin/a\n program /bin/b"),
            ["line 3: `program` given twice for this service"]
        );
        assert_eq!(errors("service a"), ["line 1: service `a` has no `program` line"]);
        assert_eq!(
            errors("service A\n program /bin/a"),
            ["line 1: bad service name `A` (1 to 16 of a-z 0-9 - _, starting with a letter)"]
        );
        assert_eq!(
            errors("service a\n program bin/a"),
            ["line 2: bad program path `bin/a` (absolute, at most 128 bytes)"]
        );
        assert_eq!(
            errors("service a\n program /a\nservice a\n program /a"),
            ["line 3: service `a` is already defined on line 1"]
        );
        assert_eq!(
            errors("service a\n program /a\n endpoint b"),
            ["line 3: endpoint to `b`, which is not a service of this manifest"]
        );
        assert_eq!(
            errors("service a\n program /a\n endpoint b\nservice b\n program /b"),
            ["line 3: endpoints go through the name service, but no service is called `names`"]
        );
        assert_eq!(errors("service a\n program /a\n endpoint a"), ["line 3: a service needs no endpoint to itself"]);
        assert_eq!(
            errors("service a\n program /a\n ports 0x3f8-0x3ff\nservice b\n program /b\n ports 0x3fc-0x400"),
            ["line 6: I/O ports overlap those of service `a`"]
        );
        // Shared only when both lines say so.
        let both =
            "service a\n program /a\n ports 0xcf8-0xcff shared\nservice b\n program /b\n ports 0xcf8-0xcff shared";
        assert!(parse(both.as_bytes()).is_ok());
        assert_eq!(
            errors("service a\n program /a\n ports 0xcf8-0xcff\nservice b\n program /b\n ports 0xcf8-0xcff shared"),
            ["line 6: I/O ports overlap those of service `a`"]
        );
        let m = parse(b"service a\n program /a\n device-memory 0xfe000000 4K shared\n").unwrap();
        assert!(m.services[0].grants[0].shared);
        assert_eq!(m.services[0].grants[0].capability, Capability::DeviceMemory { base: 0xfe00_0000, len: 4096 });
        assert_eq!(
            errors("service a\n program /a\n irq 4\n irq 4"),
            ["line 4: interrupt lines overlap those of service `a`"]
        );
        assert_eq!(
            errors("service a\n program /a\n device-memory 0x1001 4K"),
            ["line 3: device memory base `0x1001` out of range (page-aligned, not empty, below 4 GiB)"]
        );
        assert_eq!(errors("service a\n program /a\n ports 0x400-0x3f8").len(), 1);
    }

    #[test]
    fn every_error_is_reported_not_just_the_first() {
        let e = errors("bogus\nservice a\n priority 99\n restart maybe\n");
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e[0].starts_with("line 1: unknown keyword"));
        assert!(e[1].starts_with("line 3: priority"));
        assert!(e[2].starts_with("line 4: restart policy"));
        assert!(e[3].starts_with("line 2: service `a` has no `program`"));
    }

    #[test]
    fn hostile_bytes_give_errors_with_lines() {
        let e = parse(b"service a\n program /a\n\xff\xfe\n").unwrap_err();
        assert_eq!(e, [Error { line: 3, problem: Problem::NotUtf8 }]);
        let long = alloc::vec![b'x'; LINE_MAX + 1];
        assert_eq!(parse(&long).unwrap_err(), [Error { line: 1, problem: Problem::LineTooLong }]);
        let many: String = (0..100).map(|_| "x\n").collect();
        let e = parse(many.as_bytes()).unwrap_err();
        assert_eq!(e.len(), ERRORS_MAX + 1);
        assert_eq!(e[ERRORS_MAX].problem, Problem::TooManyErrors);
        // Control characters never reach the console.
        let e = errors("\u{1b}[2J");
        assert!(e[0].contains("`?[2J`"), "{e:?}");
    }

    #[test]
    fn limits() {
        let mut text = String::new();
        for i in 0..=SERVICES_MAX {
            text += &format!("service s{i}\n program /bin/s\n");
        }
        assert_eq!(errors(&text), [format!("line {}: more than 32 services", 2 * SERVICES_MAX + 1)]);
        let mut text = String::from("service a\n program /a\n");
        for i in 0..=CAPABILITIES_MAX {
            text += &format!(" irq {i}\n");
        }
        assert_eq!(
            errors(&text),
            [format!("line {}: more than 16 capabilities for one service", 3 + CAPABILITIES_MAX)]
        );
    }
}
