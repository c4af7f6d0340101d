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
