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

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use serde_json::{json, Value};
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

/// The absolute path of `rel` under `root`, if `rel` is plain names without links; a missing
/// last component is allowed when `new`.
fn resolve(fs: &Fs, root: &str, rel: &str, new: bool) -> Result<String, (RpcErrorCode, String)> {
    let plain = |c: &str| !c.is_empty() && c != "." && c != ".." && !c.contains('\0');
    if rel.starts_with('/') || !rel.split('/').all(plain) {
        return Err(bad(format!("{rel:?} is not a relative path of plain names")));
    }
    let parts: Vec<&str> = rel.split('/').collect();
    let mut path = String::from(root);
    for (i, part) in parts.iter().enumerate() {
        path.push('/');
        path.push_str(part);
        match fs.lstat(&path) {
            Ok(stat) if stat.kind == Kind::Symlink => {
                return Err((RpcErrorCode::PERMISSION_DENIED, format!("{rel:?} leads through a symbolic link")))
            }
            Ok(stat) if i + 1 < parts.len() && stat.kind != Kind::Directory => {
                return Err(io(rel, fs::Error::NotFound));
            }
            Ok(_) => {}
            Err(fs::Error::NotFound) if new && i + 1 == parts.len() => {}
            Err(e) => return Err(io(rel, e)),
        }
    }
    Ok(path)
}

fn answer(value: &Value) -> Served {
    serde_json::to_vec(value).map_err(|e| (RpcErrorCode::INTERNAL, format!("{e}")))
}

/// Serves one `storage.*` method on the directory `root`.
pub fn serve(fs: &Fs, root: &str, method: &str, payload: &[u8]) -> Served {
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
