//! The storage capability of a Tutti device: a shared directory (`/disk/shared`) that trusted
//! devices the policy allows read and write through `storage.*`, with the methods and JSON of
//! `tutti serve --storage` on a Linux host (docs/softbus/cli.md): `storage.put {"path",
//! "content"}`, `storage.get {"path"}` → `{"path","content"}`, `storage.list {"path"?}` →
//! `{"path","entries":[{"name","dir","bytes"}]}`; UTF-8 text of at most 512 KiB.
//!
//! Design: a path a peer sends is relative and made of plain names; anything else is refused
//! before the file system is asked. Then every component is looked at without following it
//! (`lstat`): a symbolic link anywhere is refused, so nothing leads out of the directory (the
//! file-system service would follow links itself). A new file's parent must exist.
//!
//! The binary methods of remote file access (`softbus::storage`: `storage.stat`, `.read`,
//! `.write`, ... behind another device's `/remote/<this device>/`) go through [`Shared`], the
//! same checks on the same directory.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use serde_json::{json, Value};
use softbus::storage::{Backend, Entry, FileError, FileKind, FileStat};
use softbus::wire::RpcErrorCode;
use svc::fs::{self, Fs, Kind};

/// The largest file `storage.get` or `storage.put` handles.
pub const MAX_FILE: usize = 512 * 1024;

type Served = Result<Vec<u8>, (RpcErrorCode, String)>;

fn bad(message: String) -> (RpcErrorCode, String) {
    (RpcErrorCode::INVALID_ARGUMENT, message)
}

fn io(rel: &str, e: fs::Error) -> (RpcErrorCode, String) {
    match e {
        fs::Error::NotFound => (RpcErrorCode::NOT_FOUND, format!("{rel:?} does not exist")),
        other => (RpcErrorCode::INTERNAL, format!("{rel:?}: {}", other.text())),
    }
}

/// Why a path a peer sent was not resolved.
enum Refusal {
    /// Not a relative path of plain names.
    NotPlain,
    /// A symbolic link on the way.
    Link,
    /// The file system's answer (a missing component, or what failed).
    Fs(fs::Error),
}

/// The absolute path of `rel` under `root`, if `rel` is plain names without links; a missing
/// last component is allowed when `new`.
fn locate(fs: &Fs, root: &str, rel: &str, new: bool) -> Result<String, Refusal> {
    let plain = |c: &str| !c.is_empty() && c != "." && c != ".." && !c.contains('\0');
    if rel.starts_with('/') || !rel.split('/').all(plain) {
        return Err(Refusal::NotPlain);
    }
    let parts: Vec<&str> = rel.split('/').collect();
    let mut path = String::from(root);
    for (i, part) in parts.iter().enumerate() {
        path.push('/');
        path.push_str(part);
        match fs.lstat(&path) {
            Ok(stat) if stat.kind == Kind::Symlink => return Err(Refusal::Link),
            Ok(stat) if i + 1 < parts.len() && stat.kind != Kind::Directory => {
                return Err(Refusal::Fs(fs::Error::NotFound));
            }
            Ok(_) => {}
            Err(fs::Error::NotFound) if new && i + 1 == parts.len() => {}
            Err(e) => return Err(Refusal::Fs(e)),
        }
    }
    Ok(path)
}

/// [`locate`] for the JSON methods: a refusal as their RPC error and message.
fn resolve(fs: &Fs, root: &str, rel: &str, new: bool) -> Result<String, (RpcErrorCode, String)> {
    locate(fs, root, rel, new).map_err(|refusal| match refusal {
        Refusal::NotPlain => bad(format!("{rel:?} is not a relative path of plain names")),
        Refusal::Link => (RpcErrorCode::PERMISSION_DENIED, format!("{rel:?} leads through a symbolic link")),
        Refusal::Fs(e) => io(rel, e),
    })
}

fn answer(value: &Value) -> Served {
    serde_json::to_vec(value).map_err(|e| (RpcErrorCode::INTERNAL, format!("{e}")))
}

/// The file error of a local file-system error.
fn file_error(e: fs::Error) -> FileError {
    use fs::Error as E;
    match e {
        E::NotFound => FileError::NotFound,
        E::Exists => FileError::Exists,
        E::NotDirectory => FileError::NotDirectory,
        E::IsDirectory => FileError::IsDirectory,
        E::NotEmpty => FileError::NotEmpty,
        E::NoSpace => FileError::NoSpace,
        E::NameTooLong => FileError::NameTooLong,
        E::InvalidPath => FileError::InvalidPath,
        E::ReadOnly => FileError::ReadOnly,
        E::TooBig => FileError::TooBig,
        E::InvalidArgument => FileError::InvalidArgument,
        E::Unsupported | E::Busy | E::CrossDevice => FileError::Unsupported,
        E::Loop | E::PermissionDenied => FileError::PermissionDenied,
        _ => FileError::Io,
    }
}

/// The shared directory as a backend of the binary `storage.*` methods.
struct Shared<'a> {
    fs: &'a Fs,
    root: &'a str,
}

impl Shared<'_> {
    /// The absolute path of `rel` (checked plain by `softbus::storage`), no link on the way.
    fn path(&self, rel: &str, new: bool) -> Result<String, FileError> {
        if rel.is_empty() {
            return Ok(String::from(self.root));
        }
        locate(self.fs, self.root, rel, new).map_err(|refusal| match refusal {
            Refusal::NotPlain => FileError::InvalidPath,
            Refusal::Link => FileError::PermissionDenied,
            Refusal::Fs(e) => file_error(e),
        })
    }
}

fn file_stat(s: &fs::Stat) -> FileStat {
    let kind = match s.kind {
        Kind::Regular => FileKind::Regular,
        Kind::Directory => FileKind::Directory,
        _ => FileKind::Other,
    };
    FileStat { kind, size: s.size, mtime: s.mtime, mode: s.mode & 0o7777 }
}

impl Backend for Shared<'_> {
    fn stat(&mut self, rel: &str) -> Result<FileStat, FileError> {
        let path = self.path(rel, false)?;
        self.fs.lstat(&path).map(|s| file_stat(&s)).map_err(file_error)
    }

    fn create(&mut self, rel: &str) -> Result<(), FileError> {
        let path = self.path(rel, true)?;
        let file = self.fs.open(
            &path,
            fs::flags::WRITE | fs::flags::CREATE | fs::flags::EXCLUSIVE | fs::flags::NOFOLLOW,
            0o644,
        );
        file.map_err(file_error)?.close().map_err(file_error)
    }

    fn read(&mut self, rel: &str, offset: u64, len: usize) -> Result<Vec<u8>, FileError> {
        let path = self.path(rel, false)?;
        let file = self.fs.open(&path, fs::flags::READ | fs::flags::NOFOLLOW, 0).map_err(file_error)?;
        let mut out = alloc::vec![0; len];
        let mut got = 0;
        while got < len {
            let n = file.read_at(offset + got as u64, &mut out[got..]).map_err(file_error)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        out.truncate(got);
        Ok(out)
    }

    fn write(&mut self, rel: &str, offset: Option<u64>, data: &[u8]) -> Result<(u32, u64), FileError> {
        let path = self.path(rel, false)?;
        let append = if offset.is_none() { fs::flags::APPEND } else { 0 };
        let mut file = self.fs.open(&path, fs::flags::WRITE | fs::flags::NOFOLLOW | append, 0).map_err(file_error)?;
        match offset {
            Some(at) => file.write_at(at, data),
            None => file.write(data),
        }
        .map_err(file_error)?;
        let end = file.stat().map_err(file_error)?.size;
        file.close().map_err(file_error)?;
        Ok((data.len() as u32, end))
    }

    fn list(&mut self, rel: &str) -> Result<Vec<Entry>, FileError> {
        let dir = self.path(rel, false)?;
        let mut out = Vec::new();
        for entry in self.fs.read_dir(&dir).map_err(file_error)? {
            let name = entry.name_str();
            let stat = self.fs.lstat(&format!("{dir}/{name}")).map(|s| file_stat(&s));
            let (kind, size) = stat.map_or((FileKind::Other, 0), |s| (s.kind, s.size));
            out.push(Entry { name, kind, size });
        }
        Ok(out)
    }

    fn mkdir(&mut self, rel: &str) -> Result<(), FileError> {
        let path = self.path(rel, true)?;
        self.fs.mkdir(&path, 0o755).map_err(file_error)
    }

    fn remove(&mut self, rel: &str, dir: bool) -> Result<(), FileError> {
        let path = self.path(rel, false)?;
        if dir { self.fs.rmdir(&path) } else { self.fs.unlink(&path) }.map_err(file_error)
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), FileError> {
        let (from, to) = (self.path(from, false)?, self.path(to, true)?);
        self.fs.rename(&from, &to).map_err(file_error)
    }

    fn truncate(&mut self, rel: &str, size: u64) -> Result<(), FileError> {
        let path = self.path(rel, false)?;
        self.fs.truncate(&path, size).map_err(file_error)
    }

    fn sync(&mut self, _rel: &str) -> Result<(), FileError> {
        self.fs.sync().map_err(file_error)
    }
}

/// Serves one `storage.*` method on the directory `root`.
pub fn serve(fs: &Fs, root: &str, method: &str, payload: &[u8]) -> Served {
    if let Some(reply) = softbus::storage::serve(&mut Shared { fs, root }, method, payload) {
        return Ok(reply);
    }
    let request: Value = if payload.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(payload).map_err(|e| bad(format!("not JSON: {e}")))?
    };
    let path = request.get("path").and_then(Value::as_str);
    match method {
        "storage.put" => {
            let rel = path.ok_or_else(|| bad("storage.put needs a \"path\"".into()))?;
            let content = request
                .get("content")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("storage.put needs a \"content\" string".into()))?;
            if content.len() > MAX_FILE {
                return Err(bad(format!("content larger than {MAX_FILE} bytes")));
            }
            let real = resolve(fs, root, rel, true)?;
            fs.write_file(&real, content.as_bytes()).map_err(|e| io(rel, e))?;
            fs.sync().map_err(|e| io(rel, e))?;
            answer(&json!({ "path": rel, "bytes": content.len() }))
        }
        "storage.get" => {
            let rel = path.ok_or_else(|| bad("storage.get needs a \"path\"".into()))?;
            let real = resolve(fs, root, rel, false)?;
            let too_big = || bad(format!("{rel:?} is not a text file of at most {MAX_FILE} bytes"));
            let stat = fs.stat(&real).map_err(|e| io(rel, e))?;
            if stat.kind != Kind::Regular || stat.size > MAX_FILE as u64 {
                return Err(too_big());
            }
            let bytes = fs.read_file_limited(&real, MAX_FILE).map_err(|e| io(rel, e))?;
            let content = String::from_utf8(bytes).map_err(|_| bad(format!("{rel:?} is not UTF-8")))?;
            answer(&json!({ "path": rel, "content": content }))
        }
        "storage.list" => {
            let dir = match path {
                Some(rel) => resolve(fs, root, rel, false)?,
                None => String::from(root),
            };
            let shown = path.unwrap_or(".");
            let mut entries = Vec::new();
            for entry in fs.read_dir(&dir).map_err(|e| io(shown, e))? {
                let name = entry.name_str();
                if name == "." || name == ".." {
                    continue;
                }
                let bytes = fs.lstat(&format!("{dir}/{name}")).map_or(0, |s| s.size);
                entries.push(json!({ "name": name, "dir": entry.kind == Kind::Directory, "bytes": bytes }));
            }
            entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            answer(&json!({ "path": shown, "entries": entries }))
        }
        other => Err((RpcErrorCode::NOT_FOUND, format!("no method {other:?} here"))),
    }
}
