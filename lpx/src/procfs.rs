//! `/proc` as linuxd serves it (docs/linux.md, "/proc"): which node a path names and the text of
//! each file, from a snapshot of the processes ([`ProcInfo`]). linuxd builds the snapshot and
//! serves the nodes as read-only files, directories and symbolic links.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// What linuxd knows of a process, for its `/proc/<pid>/` files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    /// The name (`comm`, at most 15 bytes).
    pub comm: Vec<u8>,
    /// `argv`, each string followed by a NUL.
    pub cmdline: Vec<u8>,
    /// `R` running or `S` waiting in linuxd.
    pub state: u8,
    pub threads: u32,
    /// Bytes reserved and bytes committed.
    pub vsize: u64,
    pub rss: u64,
    /// When it started, in clock ticks (100 per second) since boot.
    pub start_ticks: u64,
    pub exe: String,
    pub cwd: String,
    /// Signals pending, blocked, ignored and caught (bit n-1 for signal n).
    pub sig_pending: u64,
    pub sig_blocked: u64,
    pub sig_ignored: u64,
    pub sig_caught: u64,
}

/// Clock ticks per second (`AT_CLKTCK`, `sysconf(_SC_CLK_TCK)`).
pub const TICKS: u64 = 100;

/// The files of `/proc/<pid>/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PidFile {
    Stat,
    Status,
    Cmdline,
    Comm,
    Statm,
}

/// The files of `/proc` itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopFile {
    Uptime,
    Loadavg,
    Meminfo,
    Stat,
    Version,
    Mounts,
}

/// What a path under `/proc` names (after `self` is replaced by the caller's pid).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// `/proc`.
    Root,
    /// `/proc/self`: a link to the caller's directory.
    SelfLink,
    Top(TopFile),
    /// `/proc/<pid>`.
    PidDir(u32),
    PidFile(u32, PidFile),
    /// `/proc/<pid>/exe`, `/proc/<pid>/cwd`: links.
    Exe(u32),
    Cwd(u32),
}

const PID_FILES: [(&str, PidFile); 5] = [
    ("stat", PidFile::Stat),
    ("status", PidFile::Status),
    ("cmdline", PidFile::Cmdline),
    ("comm", PidFile::Comm),
    ("statm", PidFile::Statm),
];

const TOP_FILES: [(&str, TopFile); 6] = [
    ("uptime", TopFile::Uptime),
    ("loadavg", TopFile::Loadavg),
    ("meminfo", TopFile::Meminfo),
    ("stat", TopFile::Stat),
    ("version", TopFile::Version),
    ("mounts", TopFile::Mounts),
];

/// `dirent` types.
pub const DT_DIR: u8 = 4;
pub const DT_REG: u8 = 8;
pub const DT_LNK: u8 = 10;

/// Whether `path` (normalised, absolute) is `/proc` or below it.
pub fn is_proc(path: &str) -> bool {
    path == "/proc" || path.starts_with("/proc/")
}

/// The node `path` (normalised, absolute, under `/proc`) names for process `caller`, following
/// `self` where it is not the last component; `None` if it names nothing (ENOENT). Whether the
/// pid exists is the caller's to check.
pub fn resolve(path: &str, caller: u32) -> Option<Node> {
    let rest = path.strip_prefix("/proc")?;
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let pid_of = |s: &str| -> Option<u32> {
        if s == "self" {
            return Some(caller);
        }
        (!s.starts_with('0') || s == "0").then(|| s.parse().ok()).flatten()
    };
    match parts.as_slice() {
        [] => Some(Node::Root),
        ["self"] => Some(Node::SelfLink),
        [name] => match TOP_FILES.iter().find(|(n, _)| n == name) {
            Some((_, f)) => Some(Node::Top(*f)),
            None => pid_of(name).map(Node::PidDir),
        },
        [pid, "exe"] => pid_of(pid).map(Node::Exe),
        [pid, "cwd"] => pid_of(pid).map(Node::Cwd),
        [pid, file] => {
            let pid = pid_of(pid)?;
            PID_FILES.iter().find(|(n, _)| n == file).map(|(_, f)| Node::PidFile(pid, *f))
        }
        _ => None,
    }
}

/// The entries of a `/proc/<pid>` directory: name and type.
pub fn pid_entries() -> impl Iterator<Item = (&'static str, u8)> {
    PID_FILES.iter().map(|(n, _)| (*n, DT_REG)).chain([("exe", DT_LNK), ("cwd", DT_LNK)])
}

/// The entries of `/proc` besides the pid directories.
pub fn top_entries() -> impl Iterator<Item = (&'static str, u8)> {
    TOP_FILES.iter().map(|(n, _)| (*n, DT_REG)).chain([("self", DT_LNK)])
}

/// A node's inode number: distinct for every node.
pub fn ino(node: Node) -> u64 {
    let file = |f: PidFile| PID_FILES.iter().position(|(_, g)| *g == f).unwrap_or(0) as u64;
    let top = |f: TopFile| TOP_FILES.iter().position(|(_, g)| *g == f).unwrap_or(0) as u64;
    match node {
        Node::Root => 1,
        Node::SelfLink => 2,
        Node::Top(f) => 16 + top(f),
        Node::PidDir(pid) => (pid as u64) << 8,
        Node::PidFile(pid, f) => ((pid as u64) << 8) | (1 + file(f)),
        Node::Exe(pid) => ((pid as u64) << 8) | 0x40,
        Node::Cwd(pid) => ((pid as u64) << 8) | 0x41,
    }
}

/// The text of a `/proc/<pid>/` file.
pub fn pid_file(p: &ProcInfo, file: PidFile) -> Vec<u8> {
    match file {
        PidFile::Stat => stat(p).into_bytes(),
        PidFile::Status => status(p).into_bytes(),
        PidFile::Cmdline => p.cmdline.clone(),
        PidFile::Comm => {
            let mut out = p.comm.clone();
            out.push(b'\n');
            out
        }
        PidFile::Statm => {
            let pages = |b: u64| b / 4096;
            format!("{} {} 0 0 0 0 0\n", pages(p.vsize), pages(p.rss)).into_bytes()
        }
    }
}

/// `/proc/<pid>/stat`: the 52 fields of Linux's `fs/proc/array.c`, zero where linuxd keeps no
/// figure (CPU times, fault counts, addresses).
pub fn stat(p: &ProcInfo) -> String {
    let comm = String::from_utf8_lossy(&p.comm);
    let mut s = format!(
        "{} ({}) {} {} {} {} 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 {} 0 {} {} {} {}",
        p.pid,
        comm,
        p.state as char,
        p.ppid,
        p.pgid,
        p.sid,
        p.threads,
        p.start_ticks,
        p.vsize,
        p.rss / 4096,
        u64::MAX,
    );
    // startcode endcode startstack kstkesp kstkeip, then the signal sets (as decimals of the
    // first 32 bits, as Linux prints them), wchan nswap cnswap exit_signal processor
    // rt_priority policy blkio guest cguest, the seven data/arg/env addresses, exit_code.
    s.push_str(" 0 0 0 0 0");
    for set in [p.sig_pending, p.sig_blocked, p.sig_ignored, p.sig_caught] {
        s.push_str(&format!(" {}", set & 0xffff_ffff));
    }
    s.push_str(" 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n");
    s
}

/// `/proc/<pid>/status`.
pub fn status(p: &ProcInfo) -> String {
    let state = match p.state {
        b'R' => "R (running)",
        b'S' => "S (sleeping)",
        _ => "Z (zombie)",
    };
    format!(
        "Name:\t{}\nUmask:\t0022\nState:\t{state}\nTgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\nPPid:\t{}\nTracerPid:\t0\n\
         Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nFDSize:\t64\nGroups:\t\nVmSize:\t{} kB\nVmRSS:\t{} kB\n\
         Threads:\t{}\nSigPnd:\t0000000000000000\nShdPnd:\t{:016x}\nSigBlk:\t{:016x}\nSigIgn:\t{:016x}\n\
         SigCgt:\t{:016x}\n",
        String::from_utf8_lossy(&p.comm),
        p.ppid,
        p.vsize / 1024,
        p.rss / 1024,
        p.threads,
        p.sig_pending,
        p.sig_blocked,
        p.sig_ignored,
        p.sig_caught,
        pid = p.pid,
    )
}

/// What `/proc`'s own files show of the machine.
#[derive(Clone, Debug, Default)]
pub struct System {
    /// Nanoseconds since boot.
    pub uptime_ns: u64,
    /// Processes, and those running.
    pub processes: u32,
    pub running: u32,
    /// The last pid handed out.
    pub last_pid: u32,
    /// Bytes of memory linuxd may give its processes, and those free.
    pub mem_total: u64,
    pub mem_free: u64,
    /// Boot time, seconds since 1970.
    pub boot_time: u64,
    /// `(mount point, file-system type)` of every mount.
    pub mounts: Vec<(String, String)>,
}

/// The text of a `/proc` file.
pub fn top_file(s: &System, file: TopFile) -> Vec<u8> {
    let secs = s.uptime_ns / 1_000_000_000;
    let hundredths = s.uptime_ns / 10_000_000 % 100;
    match file {
        TopFile::Uptime => format!("{secs}.{hundredths:02} 0.00\n"),
        TopFile::Loadavg => format!("0.00 0.00 0.00 {}/{} {}\n", s.running, s.processes, s.last_pid),
        TopFile::Meminfo => {
            let kb = |b: u64| b / 1024;
            format!(
                "MemTotal:       {:8} kB\nMemFree:        {:8} kB\nMemAvailable:   {:8} kB\nBuffers:               0 kB\n\
                 Cached:                0 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n",
                kb(s.mem_total),
                kb(s.mem_free),
                kb(s.mem_free)
            )
        }
        TopFile::Stat => {
            let ticks = s.uptime_ns / (1_000_000_000 / TICKS);
            format!(
                "cpu  0 0 0 {ticks} 0 0 0 0 0 0\ncpu0 0 0 0 {ticks} 0 0 0 0 0 0\nbtime {}\nprocesses {}\n\
                 procs_running {}\nprocs_blocked 0\n",
                s.boot_time, s.last_pid, s.running
            )
        }
        TopFile::Version => String::from("Linux version 6.1.0-tutti (linuxd) #1 Tutti linuxd\n"),
        TopFile::Mounts => {
            let mut out = String::new();
            for (at, kind) in &s.mounts {
                let device = if kind == "tmpfs" { "tmpfs" } else { "none" };
                out.push_str(&format!("{device} {at} {kind} rw 0 0\n"));
            }
            out
        }
    }
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ProcInfo {
        ProcInfo {
            pid: 12,
            ppid: 3,
            pgid: 12,
            sid: 3,
            comm: b"sh".to_vec(),
            cmdline: b"sh\0-c\0ps\0".to_vec(),
            state: b'S',
            threads: 1,
            vsize: 8 << 20,
            rss: 40960,
            start_ticks: 250,
            exe: String::from("/bin/busybox"),
            cwd: String::from("/"),
            sig_blocked: 1 << 16,
            ..ProcInfo::default()
        }
    }

    #[test]
    fn paths_name_nodes_and_self_is_the_caller() {
        assert_eq!(resolve("/proc", 5), Some(Node::Root));
        assert_eq!(resolve("/proc/self", 5), Some(Node::SelfLink));
        assert_eq!(resolve("/proc/self/stat", 5), Some(Node::PidFile(5, PidFile::Stat)));
        assert_eq!(resolve("/proc/12/cmdline", 5), Some(Node::PidFile(12, PidFile::Cmdline)));
        assert_eq!(resolve("/proc/12", 5), Some(Node::PidDir(12)));
        assert_eq!(resolve("/proc/12/exe", 5), Some(Node::Exe(12)));
        assert_eq!(resolve("/proc/uptime", 5), Some(Node::Top(TopFile::Uptime)));
        assert_eq!(resolve("/proc/012", 5), None, "no leading zeros");
        assert_eq!(resolve("/proc/12/nope", 5), None);
        assert_eq!(resolve("/proc/12/stat/x", 5), None);
        assert_eq!(resolve("/proc/99999999999", 5), None);
        assert!(is_proc("/proc/1") && is_proc("/proc") && !is_proc("/procs"));
    }

    #[test]
    fn stat_has_52_fields_with_comm_in_parentheses() {
        let s = stat(&ProcInfo { comm: b"a b) c".to_vec(), ..info() });
        assert!(s.starts_with("12 (a b) c) S 3 12 3 0 -1 "), "{s}");
        let after = &s[s.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        assert_eq!(fields.len() + 2, 52, "{s}");
        assert_eq!(fields[19 - 2], "1", "num_threads");
        assert_eq!(fields[21 - 2], "250", "starttime");
        assert_eq!(fields[22 - 2], "8388608", "vsize");
        assert_eq!(fields[23 - 2], "10", "rss in pages");
        assert_eq!(fields[31 - 2], "65536", "blocked");
        assert!(s.ends_with('\n'));
    }

    #[test]
    fn status_and_small_files() {
        let s = status(&info());
        assert!(s.contains("Name:\tsh\n") && s.contains("State:\tS (sleeping)\n") && s.contains("PPid:\t3\n"));
        assert!(s.contains("VmRSS:\t40 kB\n") && s.contains("SigBlk:\t0000000000010000\n"));
        assert_eq!(pid_file(&info(), PidFile::Comm), b"sh\n");
        assert_eq!(pid_file(&info(), PidFile::Cmdline), b"sh\0-c\0ps\0");
        assert_eq!(pid_file(&info(), PidFile::Statm), b"2048 10 0 0 0 0 0\n");
        let sys = System { uptime_ns: 12_345_000_000, processes: 4, running: 1, last_pid: 9, ..System::default() };
        assert_eq!(top_file(&sys, TopFile::Uptime), b"12.34 0.00\n");
        assert_eq!(top_file(&sys, TopFile::Loadavg), b"0.00 0.00 0.00 1/4 9\n");
        assert!(String::from_utf8(top_file(&sys, TopFile::Stat)).unwrap().starts_with("cpu  0 0 0 1234 "));
    }

    #[test]
    fn inode_numbers_are_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for pid in [1, 2, 300] {
            for node in [Node::PidDir(pid), Node::Exe(pid), Node::Cwd(pid)]
                .into_iter()
                .chain(PID_FILES.iter().map(|(_, f)| Node::PidFile(pid, *f)))
            {
                assert!(seen.insert(ino(node)), "{node:?}");
            }
        }
        for node in [Node::Root, Node::SelfLink].into_iter().chain(TOP_FILES.iter().map(|(_, f)| Node::Top(*f))) {
            assert!(seen.insert(ino(node)), "{node:?}");
        }
    }
}
