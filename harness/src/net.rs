//! Network namespaces with a tap device, for tests that reach a Tutti machine from real host
//! sockets without touching the host's own network (docs/net.md).
//!
//! [`Namespace::create`] makes a fresh namespace (`ip netns add`), brings its loopback up and
//! creates `tap0` in it with the host-side address; QEMU runs inside it
//! ([`crate::Machine::in_namespace`]) with `-netdev tap,ifname=tap0`. The namespace (and the
//! tap with it) is removed when the value drops, also when a test panics. Host-side sockets
//! are made in a thread that has entered the namespace ([`Namespace::run_inside`]): `setns`
//! moves only the calling thread, and a socket stays in the namespace it was made in.
//! Everything here needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN); without it `create` fails with
//! [`NetSetupError::NotRoot`], which says so.

use std::fmt;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The tap device in every namespace made here.
pub const TAP: &str = "tap0";
/// The bridge of [`Namespace::create_bridge`].
pub const BRIDGE: &str = "br0";

/// A manifest entry for the test program `net_echo` (TCP and UDP echo on port 7,
/// docs/net.md), for guests that a host peer measures or checks.
pub const ECHO_SERVICE: &str = "
service echo
    program /bin/net_echo
    priority 10
    restart never
    endpoint net
";

/// The host's address on the segment of a device network ([`Namespace::create_bridge`] as
/// `cargo xtask run --nodes` and the soft bus tests make it); guest `i` is 10.77.0.(10+i).
pub const NODE_HOST: &str = "10.77.0.1";

/// The address of guest `i` of a device network.
pub fn node_address(i: usize) -> String {
    format!("10.77.0.{}", 10 + i)
}

/// `manifest` (the default one) for guest `i` of a device network: the network service with
/// the static address [`node_address`]`(i)`, the soft bus server named `node<i>`. `None` if the
/// manifest has no DHCP network service or no soft bus server to change.
pub fn node_manifest(manifest: &str, i: usize) -> Option<String> {
    if !manifest.contains("    arg dhcp\n") || !manifest.contains("    program /bin/softbusd\n") {
        return None;
    }
    Some(
        manifest
            .replace(
                "    arg dhcp\n",
                &format!("    arg address={}/24\n    arg gateway={NODE_HOST}\n", node_address(i)),
            )
            .replace("    program /bin/softbusd\n", &format!("    program /bin/softbusd\n    arg name=node{i}\n")),
    )
}

/// Why a namespace could not be set up or entered.
#[derive(Debug)]
pub enum NetSetupError {
    /// Not running as root: the tests that need a tap device cannot run.
    NotRoot,
    /// `ip` (iproute2) is not installed.
    IpMissing,
    /// A command failed: what was run and what it said.
    Command { command: String, output: String },
    /// A system call failed.
    Os { what: &'static str, error: std::io::Error },
}

impl fmt::Display for NetSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetSetupError::NotRoot => write!(
                f,
                "this test needs root: it creates a network namespace and a tap device \
                 (run `cargo xtask test` as root, as CI does)"
            ),
            NetSetupError::IpMissing => write!(f, "`ip` not found; install it with: apt-get install -y iproute2"),
            NetSetupError::Command { command, output } => write!(f, "`{command}` failed: {}", output.trim()),
            NetSetupError::Os { what, error } => write!(f, "{what}: {error}"),
        }
    }
}

impl std::error::Error for NetSetupError {}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // Safety: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn ip(args: &[&str]) -> Result<(), NetSetupError> {
    let output = Command::new("ip").args(args).output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => NetSetupError::IpMissing,
        _ => NetSetupError::Os { what: "running ip", error: e },
    })?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    Err(NetSetupError::Command { command: format!("ip {}", args.join(" ")), output: text })
}

/// A network namespace with `tap0` (up, with the host's address); removed on drop.
pub struct Namespace {
    name: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Namespace {
    /// A fresh namespace `tutti-<tag>-<pid>-<n>` with only `lo` (up).
    fn empty(tag: &str) -> Result<Namespace, NetSetupError> {
        if !is_root() {
            return Err(NetSetupError::NotRoot);
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("tutti-{tag}-{}-{n}", std::process::id());
        ip(&["netns", "add", &name])?;
        // From here on, drop removes it whatever fails next.
        let ns = Namespace { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Creates namespace `tutti-<tag>-<pid>-<n>` with `tap0` addressed `host_cidr`
    /// (`"10.99.0.1/24"`).
    pub fn create(tag: &str, host_cidr: &str) -> Result<Namespace, NetSetupError> {
        let ns = Namespace::empty(tag)?;
        ns.ip(&["tuntap", "add", "dev", TAP, "mode", "tap"])?;
        ns.ip(&["addr", "add", host_cidr, "dev", TAP])?;
        ns.ip(&["link", "set", TAP, "up"])?;
        Ok(ns)
    }

    /// Creates namespace `tutti-<tag>-<pid>-<n>` holding one L2 segment: a bridge `br0`
    /// addressed `host_cidr` (the host's side: processes run in the namespace reach the guests
    /// through it) and `taps` tap devices `tap0`, `tap1`, ... enslaved to it, one per guest;
    /// multicast (224.0.0.0/4) is routed to the bridge. Removed on drop, taps and bridge with it.
    pub fn create_bridge(tag: &str, host_cidr: &str, taps: usize) -> Result<Namespace, NetSetupError> {
        let ns = Namespace::empty(tag)?;
        ns.ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        ns.ip(&["addr", "add", host_cidr, "dev", BRIDGE])?;
        ns.ip(&["link", "set", BRIDGE, "up"])?;
        for i in 0..taps {
            let tap = format!("tap{i}");
            ns.ip(&["tuntap", "add", "dev", &tap, "mode", "tap"])?;
            ns.ip(&["link", "set", &tap, "master", BRIDGE])?;
            ns.ip(&["link", "set", &tap, "up"])?;
        }
        ns.ip(&["route", "add", "224.0.0.0/4", "dev", BRIDGE])?;
        Ok(ns)
    }

    /// `machine` as guest `i` of the segment of [`Namespace::create_bridge`]: run in this
    /// namespace, its NIC on `tap<i>` with the MAC `52:54:00:77:00:<10+i>`, and `disk` as its
    /// virtio-blk disk (raw).
    pub fn node(&self, machine: crate::Machine, i: usize, disk: &std::path::Path) -> crate::Machine {
        machine
            .in_namespace(&self.name)
            .arg("-drive")
            .arg(&format!("file={},if=none,id=d0,format=raw", disk.display()))
            .arg("-device")
            .arg("virtio-blk-pci,drive=d0")
            .arg("-netdev")
            .arg(&format!("tap,id=n0,ifname=tap{i},script=no,downscript=no"))
            .arg("-device")
            .arg(&format!("virtio-net-pci,netdev=n0,mac=52:54:00:77:00:{:02x}", 10 + i))
    }

    /// The namespace's name (for `ip netns exec`, [`crate::Machine::in_namespace`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip <args>` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<(), NetSetupError> {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Runs `f` on a new thread that has entered the namespace, and returns its result (a
    /// panic in `f` is passed on). Sockets `f` makes live in the namespace.
    pub fn run_inside<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<std::thread::JoinHandle<T>, NetSetupError> {
        let path = format!("/var/run/netns/{}", self.name);
        let file =
            std::fs::File::open(&path).map_err(|error| NetSetupError::Os { what: "opening the namespace", error })?;
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            // Safety: `file` is an open namespace file; setns changes only this thread's
            // network namespace.
            let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if result != 0 {
                let _ = tx.send(Err(std::io::Error::last_os_error()));
                panic!("setns failed");
            }
            let _ = tx.send(Ok(()));
            f()
        });
        match rx.recv() {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(error)) => Err(NetSetupError::Os { what: "entering the namespace (setns)", error }),
            Err(_) => {
                Err(NetSetupError::Os { what: "entering the namespace", error: std::io::Error::other("thread died") })
            }
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace removes the tap in it (QEMU has exited or is killed by then;
        // a tap still open is removed once QEMU closes it).
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("warning: could not remove network namespace {}: {e}", self.name);
        }
    }
}

/// A raw `AF_PACKET` socket bound to one interface: sends whole Ethernet frames as given
/// (no checks). Make it inside the namespace ([`Namespace::run_inside`]).
pub struct RawSocket {
    fd: libc::c_int,
    ifindex: libc::c_int,
}

impl RawSocket {
    /// A raw socket on interface `name`.
    pub fn open(name: &str) -> Result<RawSocket, NetSetupError> {
        let cname = std::ffi::CString::new(name).map_err(|_| NetSetupError::Os {
            what: "interface name",
            error: std::io::ErrorKind::InvalidInput.into(),
        })?;
        // Safety: `cname` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) } as libc::c_int;
        if ifindex == 0 {
            return Err(NetSetupError::Os { what: "finding the interface", error: std::io::Error::last_os_error() });
        }
        let protocol = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
        // Safety: plain socket creation; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, protocol) };
        if fd < 0 {
            return Err(NetSetupError::Os { what: "opening a packet socket", error: std::io::Error::last_os_error() });
        }
        Ok(RawSocket { fd, ifindex })
    }

    /// Sends one frame (at least 14 bytes for the kernel to take it; shorter ones fail).
    pub fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        // Safety: sockaddr_ll is plain data; zero is a valid value for every field.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = self.ifindex;
        address.sll_halen = 6;
        address.sll_addr[..6].copy_from_slice(frame.get(..6).unwrap_or(&[0xff; 6]));
        // Safety: `frame` is valid for its length; `address` is a sockaddr_ll of the size given.
        let sent = unsafe {
            libc::sendto(
                self.fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for RawSocket {
    fn drop(&mut self) {
        // Safety: `fd` is our open socket, closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// 64-bit FNV-1a of `bytes`: the hash the TCP sinks (Tutti's `net_sink`, Linux's
/// tools/linuxbench/netsink.c) report.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// What a TCP sink answered for one transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkReport {
    /// The sink's answer line, `<bytes> <fnv1a as 16 hex digits>\n`.
    pub line: String,
    /// From the first byte sent to the end of the answer.
    pub elapsed: std::time::Duration,
}

impl SinkReport {
    /// The line a sink answers for `data`.
    pub fn expected(data: &[u8]) -> String {
        format!("{} {:016x}\n", data.len(), fnv1a(data))
    }
}

/// From a thread in `ns`: connects to the sink at `to` (retrying for up to 20 s while it is
/// not listening yet), sends `data`, closes the sending side and reads the sink's answer,
/// each with `timeout`. The error says which step failed.
pub fn send_to_sink(
    ns: &Namespace,
    to: std::net::SocketAddrV4,
    data: std::sync::Arc<Vec<u8>>,
    timeout: std::time::Duration,
) -> Result<SinkReport, String> {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let thread = ns
        .run_inside(move || -> Result<SinkReport, String> {
            let start = Instant::now();
            let mut stream = loop {
                match std::net::TcpStream::connect_timeout(&to.into(), Duration::from_secs(5)) {
                    Ok(s) => break s,
                    Err(_) if start.elapsed() < Duration::from_secs(20) => {
                        std::thread::sleep(Duration::from_millis(200))
                    }
                    Err(e) => return Err(format!("connecting to {to}: {e}")),
                }
            };
            stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
            stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
            let start = Instant::now();
            stream.write_all(&data).map_err(|e| format!("sending: {e}"))?;
            stream.shutdown(std::net::Shutdown::Write).map_err(|e| format!("shutdown: {e}"))?;
            let mut line = String::new();
            stream.read_to_string(&mut line).map_err(|e| format!("reading the sink's answer: {e}"))?;
            Ok(SinkReport { line, elapsed: start.elapsed() })
        })
        .map_err(|e| e.to_string())?;
    thread.join().map_err(|_| "the host thread panicked".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_manifests_get_a_static_address_and_a_name() {
        let base = "service net\n    program /bin/svc_net\n    arg dhcp\n\nservice softbus\n    program /bin/softbusd\n    quota 2M\n";
        let m = node_manifest(base, 2).unwrap();
        assert!(m.contains("    arg address=10.77.0.12/24\n    arg gateway=10.77.0.1\n"), "{m}");
        assert!(m.contains("    program /bin/softbusd\n    arg name=node2\n    quota 2M\n"), "{m}");
        assert!(!m.contains("dhcp"));
        assert!(node_manifest("service net\n", 0).is_none());
    }
}
