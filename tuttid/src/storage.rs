//! The storage service of `tutti serve`: a directory shared with trusted devices, with
//! path-traversal protection.
//!
//! Design: a [`Storage`] is a root directory. Every path a peer sends is relative and made of
//! plain names only: absolute paths, `..`, `.` and empty names are refused before the file
//! system is touched. Then the real path of what exists (the file, or its parent for a new
//! file) is resolved and must still lie inside the real root, so a symbolic link inside the
//! directory cannot lead out of it. Methods take and give JSON: `storage.put {"path",
//! "content"}`, `storage.get {"path"}` → `{"path","content"}`, `storage.list {"path"?}` →
//! `{"entries":[{"name","dir","bytes"}]}`; contents are UTF-8 text (files of any kind travel
//! with `tutti send`). A file is at most [`MAX_FILE`] bytes.
//!
//! The binary methods of remote file access (`softbus::storage`, what a Tutti device's
//! `/remote/<this host>/` sends) are served on the same directory with the same checks by the
//! [`Backend`] implementation here; the daemon runs them itself on the directory `tutti serve
//! --storage` shares.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use softbus::storage::{Backend, Entry, FileError, FileKind, FileStat};
use softbus::wire::RpcErrorCode;

/// Largest file `storage.get` or `storage.put` handles.
pub const MAX_FILE: u64 = 512 * 1024;

/// Why a storage request was refused.
#[derive(Debug)]
pub enum StorageError {
    /// The path is absolute, empty, or has `..`, `.` or other non-name parts.
    BadPath(String),
    /// The path leads outside the shared directory (through a symbolic link).
    Escapes(String),
    /// No such file or directory.
    NotFound(String),
    /// The file is larger than [`MAX_FILE`] or not UTF-8.
    Unsupported(String),
    /// The request is not the expected JSON.
    BadRequest(String),
    /// The file system failed.
    Io(String, std::io::Error),
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadPath(p) => write!(f, "{p:?} is not a relative path of plain names"),
            Self::Escapes(p) => write!(f, "{p:?} leads outside the shared directory"),
            Self::NotFound(p) => write!(f, "{p:?} does not exist"),
            Self::Unsupported(what) => f.write_str(what),
            Self::BadRequest(what) => f.write_str(what),
            Self::Io(p, e) => write!(f, "{p:?}: {e}"),
        }
    }
}

impl std::error::Error for StorageError {}

impl StorageError {
    /// The RPC error code for the caller.
    pub fn code(&self) -> RpcErrorCode {
        match self {
            Self::BadPath(_) | Self::BadRequest(_) | Self::Unsupported(_) => RpcErrorCode::INVALID_ARGUMENT,
            Self::Escapes(_) => RpcErrorCode::PERMISSION_DENIED,
            Self::NotFound(_) => RpcErrorCode::NOT_FOUND,
            Self::Io(..) => RpcErrorCode::INTERNAL,
        }
    }
}

/// A shared directory.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    /// Shares `root` (which must exist).
    pub fn new(root: &Path) -> Result<Self, StorageError> {
        let root = root.canonicalize().map_err(|e| StorageError::Io(root.display().to_string(), e))?;
        Ok(Self { root })
    }

    /// The real path of the shared directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The real path of `rel` inside the root; `for_write` allows a file that does not exist
    /// yet (its parent must).
    pub fn resolve(&self, rel: &str, for_write: bool) -> Result<PathBuf, StorageError> {
        let path = Path::new(rel);
        let plain = !rel.is_empty()
            && rel.split('/').all(|name| !name.is_empty() && name != "." && name != "..")
            && path.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain || rel.contains('\0') {
            return Err(StorageError::BadPath(rel.to_string()));
        }
        let joined = self.root.join(path);
        let real = match joined.canonicalize() {
            Ok(real) => real,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && for_write => {
                let parent = joined.parent().ok_or_else(|| StorageError::BadPath(rel.to_string()))?;
                let name = joined.file_name().ok_or_else(|| StorageError::BadPath(rel.to_string()))?;
                let parent = parent.canonicalize().map_err(|_| StorageError::NotFound(rel.to_string()))?;
                parent.join(name)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StorageError::NotFound(rel.to_string())),
            Err(e) => return Err(StorageError::Io(rel.to_string(), e)),
        };
        if !real.starts_with(&self.root) || real == self.root {
            return Err(StorageError::Escapes(rel.to_string()));
        }
        Ok(real)
    }

    /// Serves one `storage.*` method with a JSON payload.
    pub fn serve(&self, method: &str, payload: &[u8]) -> Result<serde_json::Value, StorageError> {
        let request: serde_json::Value = if payload.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(payload).map_err(|e| StorageError::BadRequest(format!("not JSON: {e}")))?
        };
        let path = request.get("path").and_then(serde_json::Value::as_str);
        match method {
            "storage.put" => {
                let rel = path.ok_or_else(|| StorageError::BadRequest("storage.put needs a \"path\"".into()))?;
                let content = request
                    .get("content")
                    .and_then(serde_json::Value::as_str)
                    .ok_or_else(|| StorageError::BadRequest("storage.put needs a \"content\" string".into()))?;
                if content.len() as u64 > MAX_FILE {
                    return Err(StorageError::Unsupported(format!("content larger than {MAX_FILE} bytes")));
                }
                let real = self.resolve(rel, true)?;
                std::fs::write(&real, content).map_err(|e| StorageError::Io(rel.to_string(), e))?;
                Ok(serde_json::json!({ "path": rel, "bytes": content.len() }))
            }
            "storage.get" => {
                let rel = path.ok_or_else(|| StorageError::BadRequest("storage.get needs a \"path\"".into()))?;
                let real = self.resolve(rel, false)?;
                let meta = std::fs::metadata(&real).map_err(|e| StorageError::Io(rel.to_string(), e))?;
                if !meta.is_file() || meta.len() > MAX_FILE {
                    return Err(StorageError::Unsupported(format!(
                        "{rel:?} is not a text file of at most {MAX_FILE} bytes"
                    )));
                }
                let bytes = std::fs::read(&real).map_err(|e| StorageError::Io(rel.to_string(), e))?;
                let content =
                    String::from_utf8(bytes).map_err(|_| StorageError::Unsupported(format!("{rel:?} is not UTF-8")))?;
                Ok(serde_json::json!({ "path": rel, "content": content }))
            }
            "storage.list" => {
                let dir = match path {
                    Some(rel) => self.resolve(rel, false)?,
                    None => self.root.clone(),
                };
                let shown = path.unwrap_or(".").to_string();
                let mut entries = Vec::new();
                for entry in std::fs::read_dir(&dir).map_err(|e| StorageError::Io(shown.clone(), e))? {
                    let entry = entry.map_err(|e| StorageError::Io(shown.clone(), e))?;
                    let meta = entry.metadata().map_err(|e| StorageError::Io(shown.clone(), e))?;
                    entries.push(serde_json::json!({
                        "name": entry.file_name().to_string_lossy(),
                        "dir": meta.is_dir(),
                        "bytes": meta.len(),
                    }));
                }
                entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
                Ok(serde_json::json!({ "path": shown, "entries": entries }))
            }
            other => Err(StorageError::NotFound(format!("method {other}"))),
        }
    }
}

fn file_error(e: &StorageError) -> FileError {
    match e {
        StorageError::BadPath(_) => FileError::InvalidPath,
        StorageError::Escapes(_) => FileError::PermissionDenied,
        StorageError::NotFound(_) => FileError::NotFound,
        StorageError::Unsupported(_) | StorageError::BadRequest(_) => FileError::Unsupported,
        StorageError::Io(_, e) => io_error(e),
    }
}

fn io_error(e: &std::io::Error) -> FileError {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => FileError::NotFound,
        K::AlreadyExists => FileError::Exists,
        K::PermissionDenied => FileError::PermissionDenied,
        K::NotADirectory => FileError::NotDirectory,
        K::IsADirectory => FileError::IsDirectory,
        K::DirectoryNotEmpty => FileError::NotEmpty,
        K::StorageFull => FileError::NoSpace,
        K::ReadOnlyFilesystem => FileError::ReadOnly,
        K::InvalidInput => FileError::InvalidArgument,
        _ => FileError::Io,
    }
}

fn file_stat(meta: &std::fs::Metadata) -> FileStat {
    use std::os::unix::fs::PermissionsExt;
    let kind = if meta.is_file() {
        FileKind::Regular
    } else if meta.is_dir() {
        FileKind::Directory
    } else {
        FileKind::Other
    };
    let mtime =
        meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
    FileStat { kind, size: meta.len(), mtime, mode: (meta.permissions().mode() & 0o7777) as u16 }
}

impl Storage {
    /// The real path of `rel` for the binary methods (`""`: the root).
    fn real(&self, rel: &str, for_write: bool) -> Result<PathBuf, FileError> {
        if rel.is_empty() {
            return Ok(self.root.clone());
        }
        self.resolve(rel, for_write).map_err(|e| file_error(&e))
    }
}

impl Backend for Storage {
    fn stat(&mut self, rel: &str) -> Result<FileStat, FileError> {
        let real = self.real(rel, false)?;
        std::fs::symlink_metadata(real).map(|m| file_stat(&m)).map_err(|e| io_error(&e))
    }

    fn create(&mut self, rel: &str) -> Result<(), FileError> {
        let real = self.real(rel, true)?;
        std::fs::OpenOptions::new().write(true).create_new(true).open(real).map(|_| ()).map_err(|e| io_error(&e))
    }

    fn read(&mut self, rel: &str, offset: u64, len: usize) -> Result<Vec<u8>, FileError> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::open(self.real(rel, false)?).map_err(|e| io_error(&e))?;
        let mut out = vec![0; len];
        let mut got = 0;
        while got < len {
            match file.read_at(&mut out[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(&e)),
            }
        }
        out.truncate(got);
        Ok(out)
    }

    fn write(&mut self, rel: &str, offset: Option<u64>, data: &[u8]) -> Result<(u32, u64), FileError> {
        use std::io::Write;
        use std::os::unix::fs::FileExt;
        let real = self.real(rel, false)?;
        let mut file =
            std::fs::OpenOptions::new().write(true).append(offset.is_none()).open(real).map_err(|e| io_error(&e))?;
        match offset {
            Some(at) => file.write_all_at(data, at),
            None => file.write_all(data),
        }
        .map_err(|e| io_error(&e))?;
        let end = file.metadata().map_err(|e| io_error(&e))?.len();
        Ok((data.len() as u32, end))
    }

    fn list(&mut self, rel: &str) -> Result<Vec<Entry>, FileError> {
        let dir = self.real(rel, false)?;
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io_error(&e))? {
            let entry = entry.map_err(|e| io_error(&e))?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            let stat = entry.metadata().map(|m| file_stat(&m));
            let (kind, size) = stat.map_or((FileKind::Other, 0), |s| (s.kind, s.size));
            out.push(Entry { name, kind, size });
        }
        Ok(out)
    }

    fn mkdir(&mut self, rel: &str) -> Result<(), FileError> {
        std::fs::create_dir(self.real(rel, true)?).map_err(|e| io_error(&e))
    }

    fn remove(&mut self, rel: &str, dir: bool) -> Result<(), FileError> {
        let real = self.real(rel, false)?;
        if dir { std::fs::remove_dir(real) } else { std::fs::remove_file(real) }.map_err(|e| io_error(&e))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), FileError> {
        std::fs::rename(self.real(from, false)?, self.real(to, true)?).map_err(|e| io_error(&e))
    }

    fn truncate(&mut self, rel: &str, size: u64) -> Result<(), FileError> {
        let file = std::fs::OpenOptions::new().write(true).open(self.real(rel, false)?).map_err(|e| io_error(&e))?;
        file.set_len(size).map_err(|e| io_error(&e))
    }

    fn sync(&mut self, rel: &str) -> Result<(), FileError> {
        let real = self.real(rel, false)?;
        if real.is_file() {
            std::fs::File::open(real).and_then(|f| f.sync_all()).map_err(|e| io_error(&e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_directory() {
        let base = std::env::temp_dir().join(format!("tuttid-storage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("shared");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(base.join("secret"), "no").unwrap();
        std::os::unix::fs::symlink(&base, root.join("out")).unwrap();
        let s = Storage::new(&root).unwrap();
        for bad in ["", "/etc/passwd", "../secret", "sub/../../secret", "./x", "a//..", "sub/."] {
            assert!(matches!(s.resolve(bad, true), Err(StorageError::BadPath(_))), "{bad:?}");
        }
        assert!(matches!(s.resolve("out/secret", false), Err(StorageError::Escapes(_))));
        assert!(matches!(s.resolve("out/new", true), Err(StorageError::Escapes(_))));
        assert!(matches!(s.resolve("missing/new", true), Err(StorageError::NotFound(_))));
        s.serve("storage.put", br#"{"path":"sub/note.txt","content":"hello"}"#).unwrap();
        let got = s.serve("storage.get", br#"{"path":"sub/note.txt"}"#).unwrap();
        assert_eq!(got["content"], "hello");
        let list = s.serve("storage.list", b"").unwrap();
        let names: Vec<&str> =
            list["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["out", "sub"]);
        let err = s.serve("storage.get", br#"{"path":"../secret"}"#).unwrap_err();
        assert_eq!(err.code(), RpcErrorCode::INVALID_ARGUMENT);
        let err = s.serve("storage.get", br#"{"path":"out/secret"}"#).unwrap_err();
        assert_eq!(err.code(), RpcErrorCode::PERMISSION_DENIED);
        // The binary methods of remote file access, on the same directory and rules.
        use softbus::storage::{decode_reply, serve, Reply, Request};
        let mut s = s;
        let mut call = |r: Request<'_>| decode_reply(r.asked(), &serve(&mut s, r.method(), &r.encode()).unwrap());
        let write = Request::Write { path: "sub/bin", offset: None, data: &[0, 255, 7] };
        assert_eq!(call(write.clone()), Err(FileError::NotFound));
        assert!(call(Request::Open { path: "sub/bin", flags: softbus::storage::open::CREATE }).is_ok());
        assert_eq!(call(write), Ok(Reply::Written { len: 3, end: 3 }));
        assert_eq!(call(Request::Read { path: "sub/bin", offset: 1, len: 10 }), Ok(Reply::Data(vec![255, 7])));
        assert_eq!(call(Request::Stat { path: "out/secret" }), Err(FileError::PermissionDenied));
        assert_eq!(call(Request::Read { path: "out/secret", offset: 0, len: 1 }), Err(FileError::PermissionDenied));
        assert_eq!(call(Request::Mkdir { path: "out/new" }), Err(FileError::PermissionDenied));
        assert_eq!(call(Request::Remove { path: "sub", dir: true }), Err(FileError::NotEmpty));
        assert_eq!(call(Request::Rename { from: "sub/bin", to: "sub/moved" }), Ok(Reply::Done));
        let Ok(Reply::Entries { entries, more: false }) = call(Request::ReadDir { path: "sub", start: 0 }) else {
            panic!("no listing")
        };
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["moved", "note.txt"]);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
