//! Remote programs (`compute.run`, `compute.output`): a trusted device the `compute` policy
//! allows starts a Linux program here and reads its output while it runs
//! (docs/softbus/tutti.md, "Remote programs").
//!
//! Design: the program runs under the Linux personality with its standard output and error
//! captured in a pipe (`svc::linux` `SpawnCaptured`) and its input `/dev/null`; nothing blocks
//! softbusd: `compute.run` answers the run's number at once, and each `compute.output` answers
//! what the program wrote since the last one (at most a buffer, 8 KiB), whether it ended and
//! how. A full pipe makes the program wait for its reader, so output is never lost and never
//! piles up here. Only the device that started a run reads it; at most [`MAX_RUNS`] runs at a
//! time; a run is forgotten once its end was reported.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use serde_json::{json, Value};
use softbus::identity::DeviceId;
use softbus::wire::RpcErrorCode;
use svc::linux::{LinuxClient, LinuxError, Status};

/// Runs at a time (all devices together).
pub const MAX_RUNS: usize = 4;
/// The most arguments and bytes of them a run takes.
const MAX_ARGS: usize = 64;
const MAX_ARG_BYTES: usize = 4096;

type Served = Result<Vec<u8>, (RpcErrorCode, String)>;

struct Run {
    peer: DeviceId,
    /// The pipe is empty and closed.
    output_done: bool,
}

/// The remote programs of this device.
#[derive(Default)]
pub struct Runs {
    linux: Option<LinuxClient>,
    runs: BTreeMap<u32, Run>,
}

fn bad(message: String) -> (RpcErrorCode, String) {
    (RpcErrorCode::INVALID_ARGUMENT, message)
}

fn answer(value: &Value) -> Served {
    serde_json::to_vec(value).map_err(|e| (RpcErrorCode::INTERNAL, format!("{e}")))
}

fn linux_failed(e: LinuxError) -> (RpcErrorCode, String) {
    (RpcErrorCode::UNAVAILABLE, format!("the Linux personality: {e}"))
}

impl Runs {
    fn linux(&mut self) -> Result<&LinuxClient, (RpcErrorCode, String)> {
        if self.linux.is_none() {
            let client = LinuxClient::connect(500_000_000).map_err(|e| {
                (RpcErrorCode::UNAVAILABLE, format!("this device runs no Linux programs for others: {e}"))
            })?;
            self.linux = Some(client);
        }
        self.linux.as_ref().ok_or((RpcErrorCode::INTERNAL, String::new()))
    }

    /// Serves `compute.run` and `compute.output` for `peer`; `None` for other methods.
    pub fn serve(&mut self, peer: &DeviceId, method: &str, payload: &[u8]) -> Option<Served> {
        let served = match method {
            "compute.run" => self.start(peer, payload),
            "compute.output" => self.output(peer, payload),
            _ => return None,
        };
        // A restarted Linux personality: connect again next time.
        if matches!(&served, Err((RpcErrorCode::UNAVAILABLE, _))) {
            self.linux = None;
        }
        Some(served)
    }

    fn start(&mut self, peer: &DeviceId, payload: &[u8]) -> Served {
        let request: Value = serde_json::from_slice(payload).map_err(|e| bad(format!("not JSON: {e}")))?;
        let program = request
            .get("program")
            .and_then(Value::as_str)
            .filter(|p| p.starts_with('/'))
            .ok_or_else(|| bad("compute.run needs an absolute \"program\" path".into()))?;
        let mut argv: Vec<&str> = alloc::vec![program];
        match request.get("args") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    argv.push(item.as_str().ok_or_else(|| bad("\"args\" must be strings".into()))?);
                }
            }
            Some(_) => return Err(bad("\"args\" must be a list of strings".into())),
        }
        let bytes: usize = argv.iter().map(|a| a.len() + 1).sum();
        if argv.len() > MAX_ARGS || bytes > MAX_ARG_BYTES || argv.iter().any(|a| a.contains('\0')) {
            return Err(bad(format!("at most {MAX_ARGS} arguments of {MAX_ARG_BYTES} bytes, without NUL")));
        }
        if self.runs.len() >= MAX_RUNS {
            return Err((RpcErrorCode::RESOURCE_EXHAUSTED, format!("{MAX_RUNS} programs run for others already")));
        }
        let envp = ["PATH=/bin:/disk:/boot/bin", "HOME=/", "LANG=C"];
        let pid = match self.linux()?.spawn_captured(program, "/", &argv, &envp) {
            Ok(pid) => pid,
            Err(LinuxError::Refused(_, message)) => return Err((RpcErrorCode::NOT_FOUND, message)),
            Err(e) => return Err(linux_failed(e)),
        };
        rt::log::info!("running {program} (pid {pid}) for {peer}");
        self.runs.insert(pid, Run { peer: *peer, output_done: false });
        answer(&json!({ "run": pid }))
    }

    fn output(&mut self, peer: &DeviceId, payload: &[u8]) -> Served {
        let request: Value = serde_json::from_slice(payload).map_err(|e| bad(format!("not JSON: {e}")))?;
        let pid = request
            .get("run")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad("compute.output needs the \"run\" number compute.run gave".into()))?;
        let Some(run) = self.runs.get(&pid).filter(|r| r.peer == *peer) else {
            return Err((RpcErrorCode::NOT_FOUND, format!("no run {pid} of this device")));
        };
        let output_done = run.output_done;
        let linux = self.linux()?;
        let (bytes, now_done) =
            if output_done { (Vec::new(), true) } else { linux.output(pid).map_err(linux_failed)? };
        let status = linux.status(pid).map_err(linux_failed)?;
        let (ended, exit, signal) = match status {
            Some(Status::Running) => (false, Value::Null, Value::Null),
            Some(Status::Exited(code)) => (true, json!(code), Value::Null),
            Some(Status::Killed(sig)) => (true, Value::Null, json!(sig)),
            None => (true, Value::Null, Value::Null),
        };
        let done = now_done && ended;
        if done {
            self.runs.remove(&pid);
        } else if let Some(run) = self.runs.get_mut(&pid) {
            run.output_done = now_done;
        }
        let text = String::from_utf8_lossy(&bytes);
        answer(&json!({ "output": text, "done": done, "exit": exit, "signal": signal }))
    }
}
