//! Paths of a Linux process: joining a relative path to the working directory or a directory
//! descriptor's path, and the lexical normalisation used for the working directory.

use alloc::string::String;
use alloc::vec::Vec;

/// The longest path a process may pass (`PATH_MAX`, with its NUL).
pub const PATH_MAX: usize = 4096;

/// `path` made absolute against `base` (an absolute directory); an absolute `path` is kept.
/// The file-system service resolves `.`, `..` and symbolic links itself.
pub fn join(base: &str, path: &str) -> String {
    if path.starts_with('/') {
        return String::from(path);
    }
    let mut out = String::from(base);
    if !out.ends_with('/') {
        out.push('/');
    }
    out.push_str(path);
    out
}

/// `path` (absolute) without empty components, `.` and `..` (lexically; `..` of `/` is `/`).
pub fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let mut out = String::new();
    for p in parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_normalises() {
        assert_eq!(join("/tmp", "a/b"), "/tmp/a/b");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/tmp", "/disk/x"), "/disk/x");
        assert_eq!(normalise("/a/./b//../c/"), "/a/c");
        assert_eq!(normalise("/../.."), "/");
        assert_eq!(normalise("/"), "/");
    }
}
