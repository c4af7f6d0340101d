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

use std::fmt;
use std::path::{Component, Path, PathBuf};

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
        std::fs::remove_dir_all(&base).unwrap();
    }
}
