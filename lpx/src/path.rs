//! Paths of a Linux process: joining a relative path to the working directory or a directory
//! descriptor's path, the lexical normalisation used for the working directory, and the
//! `#!` line of a script that `execve` runs through its interpreter.

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

/// The `#!` line of a script: its interpreter and the optional single argument after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shebang {
    pub interpreter: Vec<u8>,
    pub argument: Option<Vec<u8>>,
}

/// The `#!` line at the start of `head` (the file's first bytes), as Linux reads it: blanks
/// after `#!`, the interpreter up to the next blank, and the rest of the line without its
/// surrounding blanks as one argument. `None` if `head` does not start with `#!` or names no
/// interpreter.
pub fn shebang(head: &[u8]) -> Option<Shebang> {
    let rest = head.strip_prefix(b"#!")?;
    let line = rest.split(|b| *b == b'\n').next().unwrap_or(rest);
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let line = trim(line, blank);
    let end = line.iter().position(blank).unwrap_or(line.len());
    if end == 0 {
        return None;
    }
    let argument = trim(&line[end..], blank);
    Some(Shebang {
        interpreter: Vec::from(&line[..end]),
        argument: (!argument.is_empty()).then(|| Vec::from(argument)),
    })
}

fn trim(mut s: &[u8], blank: impl Fn(&u8) -> bool) -> &[u8] {
    while s.first().is_some_and(&blank) {
        s = &s[1..];
    }
    while s.last().is_some_and(&blank) {
        s = &s[..s.len() - 1];
    }
    s
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

    #[test]
    fn shebang_lines_as_linux_reads_them() {
        let sh = shebang(b"#!/bin/sh\necho hi\n").unwrap();
        assert_eq!(sh, Shebang { interpreter: b"/bin/sh".to_vec(), argument: None });
        let awk = shebang(b"#! /usr/bin/awk  -f -x \t\nBEGIN").unwrap();
        assert_eq!(awk.interpreter, b"/usr/bin/awk");
        assert_eq!(awk.argument.as_deref(), Some(&b"-f -x"[..]), "the rest of the line is one argument");
        assert_eq!(shebang(b"#!/bin/busybox").unwrap().interpreter, b"/bin/busybox", "no newline");
        assert_eq!(shebang(b"#!   \n"), None);
        assert_eq!(shebang(b"\x7fELF"), None);
        assert_eq!(shebang(b"#"), None);
    }
}
