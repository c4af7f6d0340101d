//! The Linux personality's protocol (`linuxd`, docs/linux.md) and its client.
//!
//! A client looks `linux` up in the name service and sends `Open { notify }`: linuxd keeps the
//! notification (signalled with [`ENDED_BIT`] whenever a process this client started ends)
//! and answers with a shared buffer it owns. `Spawn` takes the program's path, the working
//! directory, argv and envp from that buffer (NUL-terminated strings, in that order) and
//! answers the new process's pid, or `Refused` with a Linux errno and a message in the
//! buffer. `Status` says whether a process runs, exited (its code) or was killed (the signal).
//! `Counts` lists the unimplemented system calls processes made (number, count).
//! `SpawnCaptured` starts a program whose standard output and error go into a pipe linuxd
//! keeps for the client (its input reads as `/dev/null`); `Output` takes what is in that pipe
//! so far, so a client can pass a program's output on while it runs (the soft bus's remote
//! programs, docs/softbus/tutti.md).

use crate::LookupError;
use alloc::string::String;
use alloc::vec::Vec;
use rt::ipc::{BufRange, Cap, Client, IpcError, SharedBuffer};
use rt::sys::{self, Handle};

/// The notification bit signalled when a process of the client ends.
pub const ENDED_BIT: u64 = 1;
/// Bytes of the shared buffer linuxd makes for each client.
pub const BUFFER_LEN: u64 = 8 * 1024;

rt::protocol! {
    /// The Linux personality server.
    pub protocol Linux {
        request Request {
            /// Registers the caller (its notification for ends); answered `Opened`.
            Open { notify: Cap } = 1,
            /// Starts the program: the buffer's `range` holds path, cwd, `argc` arguments and
            /// `envc` environment strings, each NUL-terminated.
            Spawn { range: BufRange, argc: u32, envc: u32, input: bool } = 2,
            /// How process `pid` (of this client) is.
            Status { pid: u32 } = 3,
            /// The `index`-th unimplemented system call that was made, by number.
            Counts { index: u32 } = 4,
            /// As `Spawn`, with standard output and error captured (input `/dev/null`).
            SpawnCaptured { range: BufRange, argc: u32, envc: u32 } = 5,
            /// The captured output of process `pid` so far (at most the buffer): `Output`.
            Output { pid: u32 } = 6,
        }
        response Response {
            Opened { buffer: Cap, len: u64 } = 1,
            Spawned { pid: u32 } = 2,
            /// Not started: a Linux errno (`ENOEXEC`, `ENOENT`, ...) and `len` bytes of message
            /// at buffer offset 0.
            Refused { errno: u32, len: u32 } = 3,
            Running = 4,
            Exited { code: i32 } = 5,
            Killed { signal: u32 } = 6,
            NoSuchProcess = 7,
            Count { nr: u32, count: u64 } = 8,
            NoMore = 9,
            /// The caller has not sent `Open`, or the request is malformed.
            BadRequest = 10,
            /// `len` bytes of output at buffer offset 0; `done`: the process and everything it
            /// started have closed their output, nothing more will come (the pipe is gone).
            Output { len: u32, done: bool } = 11,
        }
    }
}

/// How a process ended, or that it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    Exited(i32),
    Killed(u32),
}

impl Status {
    /// The shell's status for it: the code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            Status::Running => 0,
            Status::Exited(c) => c,
            Status::Killed(s) => 128 + s as i32,
        }
    }
}

/// Why a client call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinuxError {
    Lookup(LookupError),
    Ipc(IpcError),
    Kernel(sys::Error),
    /// linuxd refused to start the program: errno and its message.
    Refused(u32, String),
    /// The arguments do not fit in the buffer.
    TooBig,
    /// An answer that does not belong to the request.
    Protocol,
}

impl core::fmt::Display for LinuxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LinuxError::Lookup(e) => write!(f, "linux service: {e:?}"),
            LinuxError::Ipc(e) => write!(f, "linux service: {e:?}"),
            LinuxError::Kernel(e) => write!(f, "{e}"),
            LinuxError::Refused(_, m) => f.write_str(m),
            LinuxError::TooBig => f.write_str("arguments too long"),
            LinuxError::Protocol => f.write_str("linux service: unexpected answer"),
        }
    }
}

impl From<IpcError> for LinuxError {
    fn from(e: IpcError) -> Self {
        LinuxError::Ipc(e)
    }
}

/// A connection to linuxd.
pub struct LinuxClient {
    client: Client<Linux>,
    buffer: SharedBuffer,
    notify: Handle,
}

impl LinuxClient {
    /// Looks `linux` up (waiting up to `wait_ns`) and registers; the caller's manifest entry
    /// needs `endpoint linux`.
    pub fn connect(wait_ns: u64) -> Result<LinuxClient, LinuxError> {
        let mut names = crate::names()?;
        let endpoint = crate::lookup(&mut names, "linux", wait_ns).map_err(LinuxError::Lookup)?;
        let _ = sys::cap_close(names.endpoint());
        let client = Client::<Linux>::new(endpoint);
        let notify = sys::notification_create().map_err(LinuxError::Kernel)?;
        let send = sys::cap_duplicate(notify, abi::syscall::rights::SEND | abi::syscall::rights::DUPLICATE, 0)
            .map_err(LinuxError::Kernel)?;
        let answer = client.call(&Request::Open { notify: Cap(send) }, sys::FOREVER_NS);
        let _ = sys::cap_close(send);
        match answer? {
            Response::Opened { buffer, .. } => {
                let buffer = SharedBuffer::map(buffer.0).map_err(|_| LinuxError::Protocol)?;
                Ok(LinuxClient { client, buffer, notify })
            }
            _ => Err(LinuxError::Protocol),
        }
    }

    /// Starts `path` with `argv` and `envp` in `cwd`; with `input`, its standard input is the
    /// console (typed lines), else it reads as `/dev/null` (end of file at once). Its pid.
    pub fn spawn(&self, path: &str, cwd: &str, argv: &[&str], envp: &[&str], input: bool) -> Result<u32, LinuxError> {
        let (range, argc, envc) = self.strings(path, cwd, argv, envp)?;
        self.spawned(Request::Spawn { range, argc, envc, input })
    }

    /// Starts `path` as [`LinuxClient::spawn`] does, with its output captured for
    /// [`LinuxClient::output`] and its input `/dev/null`.
    pub fn spawn_captured(&self, path: &str, cwd: &str, argv: &[&str], envp: &[&str]) -> Result<u32, LinuxError> {
        let (range, argc, envc) = self.strings(path, cwd, argv, envp)?;
        self.spawned(Request::SpawnCaptured { range, argc, envc })
    }

    /// What process `pid` (spawned captured) wrote since the last call, and whether that was
    /// the end of its output.
    pub fn output(&self, pid: u32) -> Result<(Vec<u8>, bool), LinuxError> {
        match self.client.call(&Request::Output { pid }, sys::FOREVER_NS)? {
            Response::Output { len, done } => {
                let mut bytes = alloc::vec![0u8; (len as usize).min(self.buffer.len())];
                self.buffer.read(0, &mut bytes).map_err(|_| LinuxError::Protocol)?;
                Ok((bytes, done))
            }
            Response::NoSuchProcess => Ok((Vec::new(), true)),
            _ => Err(LinuxError::Protocol),
        }
    }

    /// Puts path, cwd, argv and envp into the buffer: their range and counts.
    fn strings(&self, path: &str, cwd: &str, argv: &[&str], envp: &[&str]) -> Result<(BufRange, u32, u32), LinuxError> {
        let mut bytes = Vec::new();
        for s in [path, cwd].iter().chain(argv).chain(envp) {
            bytes.extend_from_slice(s.as_bytes());
            bytes.push(0);
        }
        if bytes.len() > self.buffer.len() {
            return Err(LinuxError::TooBig);
        }
        self.buffer.write(0, &bytes).map_err(|_| LinuxError::Protocol)?;
        let range = BufRange { offset: 0, len: bytes.len() as u64 };
        Ok((range, argv.len() as u32, envp.len() as u32))
    }

    fn spawned(&self, request: Request) -> Result<u32, LinuxError> {
        match self.client.call(&request, sys::FOREVER_NS)? {
            Response::Spawned { pid } => Ok(pid),
            Response::Refused { errno, len } => {
                let mut text = alloc::vec![0u8; (len as usize).min(self.buffer.len())];
                self.buffer.read(0, &mut text).map_err(|_| LinuxError::Protocol)?;
                Err(LinuxError::Refused(errno, String::from_utf8_lossy(&text).into_owned()))
            }
            _ => Err(LinuxError::Protocol),
        }
    }

    /// How process `pid` is.
    pub fn status(&self, pid: u32) -> Result<Option<Status>, LinuxError> {
        match self.client.call(&Request::Status { pid }, sys::FOREVER_NS)? {
            Response::Running => Ok(Some(Status::Running)),
            Response::Exited { code } => Ok(Some(Status::Exited(code))),
            Response::Killed { signal } => Ok(Some(Status::Killed(signal))),
            Response::NoSuchProcess => Ok(None),
            _ => Err(LinuxError::Protocol),
        }
    }

    /// Waits until process `pid` has ended (checking at least every `poll_ns`).
    pub fn wait(&self, pid: u32, poll_ns: u64) -> Result<Status, LinuxError> {
        loop {
            match self.status(pid)? {
                Some(Status::Running) => {}
                Some(end) => return Ok(end),
                None => return Err(LinuxError::Protocol),
            }
            let _ = sys::wait(self.notify, poll_ns);
        }
    }

    /// Every unimplemented system call made so far: (number, count).
    pub fn counts(&self) -> Result<Vec<(u32, u64)>, LinuxError> {
        let mut out = Vec::new();
        for index in 0..1024 {
            match self.client.call(&Request::Counts { index }, sys::FOREVER_NS)? {
                Response::Count { nr, count } => out.push((nr, count)),
                Response::NoMore => break,
                _ => return Err(LinuxError::Protocol),
            }
        }
        Ok(out)
    }
}

impl Drop for LinuxClient {
    fn drop(&mut self) {
        let _ = sys::cap_close(self.notify);
        let _ = sys::cap_close(self.client.endpoint());
    }
}
