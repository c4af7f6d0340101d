//! Paths from clients: absolute, at most [`PATH_MAX`] bytes, components at most [`NAME_MAX`]
//! bytes, no NUL. Repeated `/` and `.` are dropped here; `..` is kept for the resolver, which
//! applies it to the directory actually reached (after symbolic links and across mounts).

use crate::{Error, Result};
use alloc::vec::Vec;

/// The longest path.
pub const PATH_MAX: usize = 1024;
/// The longest component.
pub const NAME_MAX: usize = 255;

/// The components of an absolute path (without `.` and empty ones; `..` kept).
pub fn components(path: &[u8]) -> Result<Vec<Vec<u8>>> {
    if path.len() > PATH_MAX {
        return Err(Error::NameTooLong);
    }
    if path.first() != Some(&b'/') {
        return Err(Error::InvalidPath);
    }
    split(path)
}

/// The components of a symbolic link's target (absolute or relative).
pub fn split_target(target: &[u8]) -> Result<Vec<Vec<u8>>> {
    if target.len() > PATH_MAX {
        return Err(Error::NameTooLong);
    }
    if target.is_empty() {
        return Err(Error::NotFound);
    }
    split(target)
}

fn split(path: &[u8]) -> Result<Vec<Vec<u8>>> {
    if path.contains(&0) {
        return Err(Error::InvalidPath);
    }
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        if c.is_empty() || c == b"." {
            continue;
        }
        if c.len() > NAME_MAX {
            return Err(Error::NameTooLong);
        }
        out.push(c.to_vec());
    }
    Ok(out)
}

/// `path` normalised lexically (`..` applied to the text): for mount paths and messages.
pub fn normalize(path: &[u8]) -> Result<Vec<u8>> {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for c in components(path)? {
        if c == b".." {
            parts.pop();
        } else {
            parts.push(c);
        }
    }
    let mut out = Vec::new();
    for p in &parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}
