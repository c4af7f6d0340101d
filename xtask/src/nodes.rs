//! `cargo xtask run --nodes N [--host]`: N Tutti guests (and, with `--host`, a `tuttid` on the
//! host) on one virtual L2 segment, so their soft bus servers form a device network
//! (docs/softbus/tutti.md, docs/xtask.md).
//!
//! Design: one network namespace holds the segment, a bridge with the host's address and one
//! tap per guest (`harness::net::Namespace::create_bridge`); everything is removed when the run
//! ends, also when it fails. Guest `i` gets the static address 10.77.0.(10+i), the soft bus
//! name `node<i>`, its own persistent disk `target/nodes/node<i>.img` (so its keys and
//! pairings survive runs) and its own boot archive (the manifest edited). Guest 0 has this
//! terminal; the others' consoles are Unix sockets (`socat - UNIX-CONNECT:target/nodes/
//! node1.sock`). `tuttid` runs inside the namespace with its state in `target/nodes/host`,
//! and the host's `tutti --state-dir target/nodes/host ...` talks to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use harness::net::{node_address, NODE_HOST};

use crate::{image, shell_command, step, Failure};

/// The most guests one run boots.
pub const MAX_NODES: usize = 8;

/// Children killed when the run ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn nodes_dir() -> PathBuf {
    crate::root().join("target").join("nodes")
}

/// A persistent ext2 disk for guest `i`, made the first time.
fn node_disk(i: usize) -> Result<PathBuf, Failure> {
    image::persistent_disk(&nodes_dir().join(format!("node{i}.img")), 32)
}

fn node_archive(base: &Path, i: usize) -> Result<PathBuf, Failure> {
    let bytes = std::fs::read(base).map_err(|e| Failure(format!("{}: {e}", base.display())))?;
    let manifest = harness::net::node_manifest(&shell_command::manifest_of(&bytes)?, i)
        .ok_or_else(|| Failure("the manifest has no `arg dhcp` network service or no soft bus service".into()))?;
    let out = nodes_dir().join(format!("node{i}.cpio"));
    std::fs::write(&out, shell_command::with_manifest_and_files(&bytes, &manifest, &[])?)
        .map_err(|e| Failure(format!("{}: {e}", out.display())))?;
    Ok(out)
}

/// Builds `tuttid` and `tutti` (release) and returns their directory.
pub fn build_tuttid() -> Result<PathBuf, Failure> {
    step("building tuttid and tutti");
    crate::run_command(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "-q", "-p", "tuttid", "--bins"])
            .current_dir(crate::root()),
    )?;
    Ok(crate::root().join("target").join("release"))
}

/// Runs the device network until guest 0 ends.
pub fn run(nodes: usize, host: bool, mem: &str, append: &str, native: bool) -> Result<std::process::ExitCode, Failure> {
    if nodes == 0 || nodes > MAX_NODES {
        return Err(Failure(format!("--nodes takes 1 to {MAX_NODES} guests")));
    }
    if !harness::net::is_root() {
        return Err(Failure(
            "cargo xtask run --nodes needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): it creates a network \
             namespace, a bridge and a tap device per guest with `ip`; run it as root (e.g. with sudo)"
                .into(),
        ));
    }
    crate::deps::ensure(&[crate::deps::QEMU])?;
    let image = image::build()?;
    image::check_memory(mem, &image)?;
    std::fs::create_dir_all(nodes_dir()).map_err(|e| Failure(format!("{}: {e}", nodes_dir().display())))?;
    let base = if native { image.archive.clone() } else { shell_command::login_archive(&image.archive, mem)? };
    let tools = if host { Some(build_tuttid()?) } else { None };
    let ns = harness::net::Namespace::create_bridge("run", &format!("{NODE_HOST}/24"), nodes)
        .map_err(|e| Failure(format!("cannot set up the network: {e}")))?;
    step(&format!(
        "network namespace {} with bridge {} at {} and {nodes} tap device(s)",
        ns.name(),
        harness::net::BRIDGE,
        NODE_HOST
    ));
    let mut children = Children(Vec::new());
    let machine = |i: usize| -> Result<harness::Machine, Failure> {
        let disk = node_disk(i)?;
        Ok(ns.node(
            harness::Machine::new(&image.kernel).initrd(node_archive(&base, i)?).memory(mem).append(append),
            i,
            &disk,
        ))
    };
    for i in 1..nodes {
        let socket = nodes_dir().join(format!("node{i}.sock"));
        let _ = std::fs::remove_file(&socket);
        let log = std::fs::File::create(nodes_dir().join(format!("node{i}.qemu.log")))
            .map_err(|e| Failure(format!("cannot write the log of node{i}: {e}")))?;
        let child = machine(i)?
            .arg("-monitor")
            .arg("none")
            .command(&format!("unix:{},server=on,wait=off", socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| Failure(e.to_string()))?)
            .stderr(log)
            .spawn()
            .map_err(|e| Failure(format!("cannot start QEMU for node{i}: {e}")))?;
        children.0.push(child);
        step(&format!("node{i} at {}: console `socat - UNIX-CONNECT:{}`", node_address(i), socket.display()));
    }
    if let Some(bin) = &tools {
        let state = nodes_dir().join("host");
        std::fs::create_dir_all(&state).map_err(|e| Failure(format!("{}: {e}", state.display())))?;
        let log = std::fs::File::create(nodes_dir().join("host.log")).map_err(|e| Failure(e.to_string()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(bin.join("tuttid"))
            .arg("--state-dir")
            .arg(&state)
            .args(["--name", "host"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| Failure(e.to_string()))?)
            .stderr(log)
            .spawn()
            .map_err(|e| Failure(format!("cannot start tuttid: {e}")))?;
        children.0.push(child);
        step(&format!(
            "tuttid \"host\" at {NODE_HOST}: `{} --state-dir {} devices` (log: {})",
            bin.join("tutti").display(),
            state.display(),
            nodes_dir().join("host.log").display()
        ));
    }
    step(&format!("booting node0 at {} here (Ctrl-A X quits; the other nodes stop with it)", node_address(0)));
    let status = machine(0)?.interactive_command().status().map_err(|e| Failure(format!("cannot start QEMU: {e}")))?;
    drop(children);
    drop(ns);
    crate::interactive_end(status)
}
