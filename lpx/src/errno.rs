//! Linux errno values (x86_64, `asm-generic/errno-base.h` and `errno.h`) and the typed error
//! the server's handlers return; a handler's `Err(e)` becomes `-e` in the process's `rax`.

/// A Linux error number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// The value a system call returns for this error: `-errno`, as the 64-bit `rax`.
    pub fn to_rax(self) -> u64 {
        (-(self.0 as i64)) as u64
    }

    /// The symbolic name (`ENOENT`), or `E?` for one this table lacks.
    pub fn name(self) -> &'static str {
        NAMES.iter().find(|(e, _)| *e == self).map_or("E?", |(_, n)| n)
    }
}

pub const EPERM: Errno = Errno(1);
pub const ENOENT: Errno = Errno(2);
pub const ESRCH: Errno = Errno(3);
pub const EINTR: Errno = Errno(4);
pub const EIO: Errno = Errno(5);
pub const E2BIG: Errno = Errno(7);
pub const ENOEXEC: Errno = Errno(8);
pub const EBADF: Errno = Errno(9);
pub const ECHILD: Errno = Errno(10);
pub const EAGAIN: Errno = Errno(11);
pub const ENOMEM: Errno = Errno(12);
pub const EACCES: Errno = Errno(13);
pub const EFAULT: Errno = Errno(14);
pub const EBUSY: Errno = Errno(16);
pub const EEXIST: Errno = Errno(17);
pub const EXDEV: Errno = Errno(18);
pub const ENODEV: Errno = Errno(19);
pub const ENOTDIR: Errno = Errno(20);
pub const EISDIR: Errno = Errno(21);
pub const EINVAL: Errno = Errno(22);
pub const EMFILE: Errno = Errno(24);
pub const ENOTTY: Errno = Errno(25);
pub const EFBIG: Errno = Errno(27);
pub const ENOSPC: Errno = Errno(28);
pub const ESPIPE: Errno = Errno(29);
pub const EROFS: Errno = Errno(30);
pub const EPIPE: Errno = Errno(32);
pub const ERANGE: Errno = Errno(34);
pub const ENAMETOOLONG: Errno = Errno(36);
pub const ENOSYS: Errno = Errno(38);
pub const ENOTEMPTY: Errno = Errno(39);
pub const ELOOP: Errno = Errno(40);
pub const EOPNOTSUPP: Errno = Errno(95);
pub const ENOTSOCK: Errno = Errno(88);
pub const EDESTADDRREQ: Errno = Errno(89);
pub const EMSGSIZE: Errno = Errno(90);
pub const ENOPROTOOPT: Errno = Errno(92);
pub const EPROTONOSUPPORT: Errno = Errno(93);
pub const ESOCKTNOSUPPORT: Errno = Errno(94);
pub const EAFNOSUPPORT: Errno = Errno(97);
pub const EADDRINUSE: Errno = Errno(98);
pub const ENETDOWN: Errno = Errno(100);
pub const ENETUNREACH: Errno = Errno(101);
pub const ENOBUFS: Errno = Errno(105);
pub const EISCONN: Errno = Errno(106);
pub const ENOTCONN: Errno = Errno(107);
pub const ECONNREFUSED: Errno = Errno(111);
pub const EALREADY: Errno = Errno(114);
pub const EINPROGRESS: Errno = Errno(115);
pub const ETIMEDOUT: Errno = Errno(110);
pub const ESTALE: Errno = Errno(116);

const NAMES: [(Errno, &str); 51] = [
    (EPERM, "EPERM"),
    (ENOENT, "ENOENT"),
    (ESRCH, "ESRCH"),
    (EINTR, "EINTR"),
    (EIO, "EIO"),
    (E2BIG, "E2BIG"),
    (ENOEXEC, "ENOEXEC"),
    (EBADF, "EBADF"),
    (ECHILD, "ECHILD"),
    (EAGAIN, "EAGAIN"),
    (ENOMEM, "ENOMEM"),
    (EACCES, "EACCES"),
    (EFAULT, "EFAULT"),
    (EBUSY, "EBUSY"),
    (EEXIST, "EEXIST"),
    (EXDEV, "EXDEV"),
    (ENODEV, "ENODEV"),
    (ENOTDIR, "ENOTDIR"),
    (EISDIR, "EISDIR"),
    (EINVAL, "EINVAL"),
    (EMFILE, "EMFILE"),
    (ENOTTY, "ENOTTY"),
    (EFBIG, "EFBIG"),
    (ENOSPC, "ENOSPC"),
    (ESPIPE, "ESPIPE"),
    (EROFS, "EROFS"),
    (EPIPE, "EPIPE"),
    (ERANGE, "ERANGE"),
    (ENAMETOOLONG, "ENAMETOOLONG"),
    (ENOSYS, "ENOSYS"),
    (ENOTEMPTY, "ENOTEMPTY"),
    (ELOOP, "ELOOP"),
    (EOPNOTSUPP, "EOPNOTSUPP"),
    (ETIMEDOUT, "ETIMEDOUT"),
    (ESTALE, "ESTALE"),
    (ENOTSOCK, "ENOTSOCK"),
    (EDESTADDRREQ, "EDESTADDRREQ"),
    (EMSGSIZE, "EMSGSIZE"),
    (ENOPROTOOPT, "ENOPROTOOPT"),
    (EPROTONOSUPPORT, "EPROTONOSUPPORT"),
    (ESOCKTNOSUPPORT, "ESOCKTNOSUPPORT"),
    (EAFNOSUPPORT, "EAFNOSUPPORT"),
    (EADDRINUSE, "EADDRINUSE"),
    (ENETDOWN, "ENETDOWN"),
    (ENETUNREACH, "ENETUNREACH"),
    (ENOBUFS, "ENOBUFS"),
    (EISCONN, "EISCONN"),
    (ENOTCONN, "ENOTCONN"),
    (ECONNREFUSED, "ECONNREFUSED"),
    (EALREADY, "EALREADY"),
    (EINPROGRESS, "EINPROGRESS"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_return_as_negative_rax_and_have_names() {
        assert_eq!(ENOSYS.to_rax(), (-38i64) as u64);
        assert_eq!(EFAULT.to_rax() as i64, -14);
        assert_eq!(ENOEXEC.name(), "ENOEXEC");
        assert_eq!(Errno(999).name(), "E?");
    }
}
