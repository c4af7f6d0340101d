//! The client side of the local API, used by `tutti`: one request line out, one response line
//! back, over the daemon's Unix socket.
//!
//! Design: plain blocking std I/O (the command line does one thing and exits), with a read
//! timeout a little longer than the longest operation the daemon bounds itself (a call's
//! deadline, a pairing), so a hung daemon cannot hang the command line.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::api::{ApiError, Request, Response};

/// Why a request did not get a response.
#[derive(Debug)]
pub enum ClientError {
    /// No daemon listens on the socket.
    NotRunning(PathBuf, std::io::Error),
    /// Reading or writing the socket failed (or timed out).
    Io(std::io::Error),
    /// The daemon's answer is not a response.
    BadResponse(String),
    /// The daemon answered with a failure.
    Api(ApiError),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotRunning(p, e) => write!(f, "cannot reach tuttid at {}: {e} (is the daemon running?)", p.display()),
            Self::Io(e) => write!(f, "talking to tuttid failed: {e}"),
            Self::BadResponse(what) => write!(f, "tuttid sent a malformed response: {what}"),
            Self::Api(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Sends `request` to the daemon at `socket` and waits at most `timeout` for the answer.
pub fn request(socket: &Path, request: &Request, timeout: Duration) -> Result<serde_json::Value, ClientError> {
    let stream = UnixStream::connect(socket).map_err(|e| ClientError::NotRunning(socket.to_path_buf(), e))?;
    stream.set_read_timeout(Some(timeout)).map_err(ClientError::Io)?;
    stream.set_write_timeout(Some(timeout)).map_err(ClientError::Io)?;
    let mut line = serde_json::to_vec(request).map_err(|e| ClientError::BadResponse(e.to_string()))?;
    line.push(b'\n');
    (&stream).write_all(&line).map_err(ClientError::Io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(ClientError::Io)?;
    if answer.is_empty() {
        return Err(ClientError::BadResponse("the daemon closed the connection".into()));
    }
    let response: Response = serde_json::from_str(&answer).map_err(|e| ClientError::BadResponse(e.to_string()))?;
    response.into_result().map_err(ClientError::Api)
}

/// Becomes a prompt client of the daemon at `socket`: every prompt (`PromptInfo` as JSON) is
/// passed to `decide`, whose answer (allow, remember for seconds) goes back to the daemon.
/// Returns when the daemon closes the connection.
pub fn watch_prompts(
    socket: &Path,
    mut decide: impl FnMut(&serde_json::Value) -> (bool, Option<u64>),
) -> Result<(), ClientError> {
    let stream = UnixStream::connect(socket).map_err(|e| ClientError::NotRunning(socket.to_path_buf(), e))?;
    let mut line = serde_json::to_vec(&Request::Prompts).map_err(|e| ClientError::BadResponse(e.to_string()))?;
    line.push(b'\n');
    (&stream).write_all(&line).map_err(ClientError::Io)?;
    let mut reader = BufReader::new(&stream);
    loop {
        let mut text = String::new();
        if reader.read_line(&mut text).map_err(ClientError::Io)? == 0 {
            return Ok(());
        }
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ClientError::BadResponse(e.to_string()))?;
        let Some(prompt) = value.get("prompt") else {
            // A response: to `prompts` or to an answer. Failures are reported, not fatal.
            let response: Response =
                serde_json::from_value(value).map_err(|e| ClientError::BadResponse(e.to_string()))?;
            if let Err(e) = response.into_result() {
                eprintln!("tutti: {e}");
            }
            continue;
        };
        let id = prompt.get("id").and_then(serde_json::Value::as_u64).unwrap_or(0);
        let (allow, for_s) = decide(prompt);
        let answer = Request::PromptAnswer { id, allow, for_s };
        let mut line = serde_json::to_vec(&answer).map_err(|e| ClientError::BadResponse(e.to_string()))?;
        line.push(b'\n');
        (&stream).write_all(&line).map_err(ClientError::Io)?;
    }
}

/// What a streaming client does after a line.
#[derive(Debug)]
pub enum Step {
    /// Read the next line.
    Continue,
    /// Send this request on the connection, then read on.
    Reply(Request),
    /// Stop and return.
    Stop,
}

/// Sends `request` and passes every line the daemon writes back (responses and events) to
/// `on_line`, until it says stop or the daemon closes the connection. No read timeout: these
/// requests last as long as the user wants (`sub`, `serve`) or the transfer takes (`send`).
pub fn stream(
    socket: &Path,
    request: &Request,
    mut on_line: impl FnMut(serde_json::Value) -> Step,
) -> Result<(), ClientError> {
    let stream = UnixStream::connect(socket).map_err(|e| ClientError::NotRunning(socket.to_path_buf(), e))?;
    let send = |request: &Request| -> Result<(), ClientError> {
        let mut line = serde_json::to_vec(request).map_err(|e| ClientError::BadResponse(e.to_string()))?;
        line.push(b'\n');
        (&stream).write_all(&line).map_err(ClientError::Io)
    };
    send(request)?;
    let mut reader = BufReader::new(&stream);
    loop {
        let mut text = String::new();
        if reader.read_line(&mut text).map_err(ClientError::Io)? == 0 {
            return Ok(());
        }
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ClientError::BadResponse(e.to_string()))?;
        match on_line(value) {
            Step::Continue => {}
            Step::Reply(request) => send(&request)?,
            Step::Stop => return Ok(()),
        }
    }
}

/// The result of a response line, or `None` if `line` is an event rather than a response.
pub fn response_of(line: &serde_json::Value) -> Option<Result<serde_json::Value, ApiError>> {
    line.get("ok")?;
    let response: Response = serde_json::from_value(line.clone()).ok()?;
    Some(response.into_result())
}
