//! `cargo xtask run --cmd "..."`: boots Tutti with the native shell running the given commands
//! instead of reading the console, prints what they print, and exits with the last status.
//!
//! The boot archive is copied with `etc/services` changed: the `shell` service gets one
//! `arg <command>` line per command and `restart never` (docs/shell.md). The shell brackets each
//! command's output with `--- $ <command>` and `--- exit <status>`; the machine ends when the shell
//! does (`shutdown-on-exit`).

use crate::{deps, image, step, Failure};
use std::process::ExitCode;
use std::time::Duration;

/// The longest `arg` line the manifest takes (manifest::ARG_MAX).
const ARG_MAX: usize = 256;

/// `manifest` with the shell service running `commands` once.
pub fn manifest_with_commands(manifest: &str, commands: &[String]) -> Result<String, Failure> {
    let mut out = String::new();
    let mut found = false;
    for line in manifest.lines() {
        out.push_str(line);
        out.push('\n');
        if line.split_whitespace().collect::<Vec<_>>() == ["service", "shell"] {
            found = true;
            for command in commands {
                if command.contains('\n') || command.trim().is_empty() || command.len() > ARG_MAX {
                    return Err(Failure(format!("a command must be one line of 1 to {ARG_MAX} bytes: {command:?}")));
                }
                out.push_str(&format!("    arg {command}\n"));
            }
            out.push_str("    restart never\n");
        }
    }
    if !found {
        return Err(Failure("the manifest (bootfs/etc/services) has no `service shell`".into()));
    }
    Ok(out)
}

/// What `cargo xtask run` boots: the boot archive at `archive` with the host's static busybox
/// added as `/boot/bin/busybox` and the shell service starting `linux /boot/bin/busybox sh -i`
/// first (`--login`: the native shell takes the console when it exits), linuxd's quota raised
/// to 16 MiB when the guest has 64 MiB or more; the archive itself (the native shell) when
/// the host has no static busybox.
pub fn login_archive(archive: &std::path::Path, mem: &str) -> Result<std::path::PathBuf, Failure> {
    let Ok(busybox) = harness::linux::find_busybox() else {
        step("no static busybox on this machine (apt-get install busybox-static): the native shell");
        return Ok(archive.to_path_buf());
    };
    let program = std::fs::read(&busybox).map_err(|e| Failure(format!("{}: {e}", busybox.display())))?;
    let bytes = std::fs::read(archive).map_err(|e| Failure(format!("{}: {e}", archive.display())))?;
    let manifest = manifest_with_login(&manifest_of(&bytes)?, image::megabytes(mem) >= 64)?;
    let out = archive.with_file_name("login-archive.cpio");
    let extra = [("bin/busybox".to_string(), program)];
    std::fs::write(&out, with_manifest_and_files(&bytes, &manifest, &extra)?)
        .map_err(|e| Failure(format!("{}: {e}", out.display())))?;
    step("busybox sh is the shell (`exit` goes to the native shell; `cargo xtask run --native` skips it)");
    Ok(out)
}

/// `manifest` with the shell service starting busybox `sh` first and, if `roomy`, linuxd's
/// quota at 16 MiB.
pub fn manifest_with_login(manifest: &str, roomy: bool) -> Result<String, Failure> {
    let mut out = String::new();
    let mut service = String::new();
    let mut found = false;
    for line in manifest.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"service") {
            service = words.get(1).unwrap_or(&"").to_string();
        }
        if roomy && service == "linux" && words.first() == Some(&"quota") {
            out.push_str("    quota 16M\n");
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if words == ["service", "shell"] {
            found = true;
            out.push_str("    arg --login\n    arg linux /boot/bin/busybox sh -i\n");
        }
    }
    if !found {
        return Err(Failure("the manifest (bootfs/etc/services) has no `service shell`".into()));
    }
    Ok(out)
}

/// A copy of the boot archive at `archive` with `etc/services` replaced by `manifest`, written
/// beside it as `name`.
pub fn archive_with_manifest(
    archive: &std::path::Path,
    name: &str,
    manifest: &str,
) -> Result<std::path::PathBuf, Failure> {
    let bytes = std::fs::read(archive).map_err(|e| Failure(format!("{}: {e}", archive.display())))?;
    let out = archive.with_file_name(name);
    std::fs::write(&out, with_manifest(&bytes, manifest)?).map_err(|e| Failure(format!("{}: {e}", out.display())))?;
    Ok(out)
}

/// The manifest (`etc/services`) of the boot archive `bytes`.
pub fn manifest_of(bytes: &[u8]) -> Result<String, Failure> {
    newc::Archive::new(bytes)
        .ok()
        .and_then(|a| a.find("etc/services").map(|e| String::from_utf8_lossy(e.data).into_owned()))
        .ok_or_else(|| Failure("the boot archive has no etc/services".into()))
}

/// The boot archive `bytes` with `etc/services` replaced by `manifest`.
pub fn with_manifest(bytes: &[u8], manifest: &str) -> Result<Vec<u8>, Failure> {
    with_manifest_and_files(bytes, manifest, &[])
}

/// The boot archive `bytes` with `etc/services` replaced by `manifest` and the `extra` files
/// (path relative to the archive's root, contents) added, mode 0755, with the directories they
/// need. An extra path that is empty, has `.` or `..` components or is already in the archive
/// is refused.
pub fn with_manifest_and_files(bytes: &[u8], manifest: &str, extra: &[(String, Vec<u8>)]) -> Result<Vec<u8>, Failure> {
    let original = newc::Archive::new(bytes).map_err(|e| Failure(format!("boot archive: {e}")))?;
    let mut writer = newc::Writer::new();
    let mut names = std::collections::BTreeSet::new();
    for entry in original.entries() {
        if entry.name == "etc/services" {
            continue;
        }
        if entry.is_dir() {
            writer.dir(entry.name, 0o755);
        } else if entry.is_file() {
            writer.file(entry.name, 0o755, entry.data);
        }
        names.insert(entry.name.to_string());
    }
    writer.file("etc/services", 0o644, manifest.as_bytes());
    names.insert("etc/services".to_string());
    for (path, data) in extra {
        if path.split('/').any(|part| part.is_empty() || part == "." || part == "..") || names.contains(path) {
            return Err(Failure(format!("cannot add {path:?} to the boot archive (a bad path or one it holds)")));
        }
        for (end, _) in path.match_indices('/') {
            if names.insert(path[..end].to_string()) {
                writer.dir(&path[..end], 0o755);
            }
        }
        writer.file(path, 0o755, data);
        names.insert(path.clone());
    }
    Ok(writer.finish())
}

pub fn run(mem: &str, append: &str, icount: bool, commands: &[String], timeout: u64) -> Result<ExitCode, Failure> {
    deps::ensure(&[deps::QEMU])?;
    let image = image::build()?;
    image::check_memory(mem, &image)?;
    let bytes = std::fs::read(&image.archive).map_err(|e| Failure(format!("boot archive: {e}")))?;
    let manifest = manifest_of(&bytes)?;
    let archive = image.archive.with_file_name("cmd-archive.cpio");
    std::fs::write(&archive, with_manifest(&bytes, &manifest_with_commands(&manifest, commands)?)?)
        .map_err(|e| Failure(format!("{}: {e}", archive.display())))?;
    step("booting Tutti to run the commands");
    let machine = harness::Machine::new(&image.kernel)
        .initrd(&archive)
        .memory(mem)
        .append(append)
        .icount(icount)
        .deadline(Duration::from_secs(timeout));
    let machine = image::with_devices(machine)?;
    let run = machine.run().map_err(|e| Failure(format!("cannot run QEMU: {e}")))?;
    let mut status = None;
    let mut inside = false;
    for line in &run.lines {
        let text = line.text.trim_end_matches('\r');
        if let Some(rest) = text.strip_prefix("--- exit ") {
            status = rest.trim().parse::<i32>().ok();
            inside = false;
        } else if text.starts_with("--- $ ") {
            inside = true;
        } else if inside {
            println!("{text}");
        }
    }
    match status {
        Some(s) => Ok(ExitCode::from((s & 0xff) as u8)),
        None => Err(Failure(format!(
            "the shell did not finish the commands ({:?}); the console said:\n{}",
            run.ending,
            run.console()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::{manifest_of, manifest_with_commands, manifest_with_login, with_manifest_and_files};

    #[test]
    fn the_login_shell_goes_first_and_linuxd_gets_room() {
        let manifest = "service shell\n    program /bin/shell\nservice linux\n    quota 2560K\n    priority 25\n";
        let out = manifest_with_login(manifest, true).unwrap();
        assert_eq!(
            out,
            "service shell\n    arg --login\n    arg linux /boot/bin/busybox sh -i\n    program /bin/shell\nservice linux\n    quota 16M\n    priority 25\n"
        );
        assert!(manifest_with_login(manifest, false).unwrap().contains("quota 2560K"));
        assert!(manifest_with_login("service names\n", true).is_err());
    }

    #[test]
    fn the_commands_go_right_after_the_shell_service_line() {
        let manifest = "service names\n    program /bin/svc_names\nservice shell\n    program /bin/shell\n";
        let out = manifest_with_commands(manifest, &["ls /".into(), "exit 3".into()]).unwrap();
        assert_eq!(
            out,
            "service names\n    program /bin/svc_names\nservice shell\n    arg ls /\n    arg exit 3\n    restart never\n    program /bin/shell\n"
        );
    }

    #[test]
    fn bad_commands_and_a_missing_shell_are_refused() {
        assert!(manifest_with_commands("service shell\n", &["a\nb".into()]).is_err());
        assert!(manifest_with_commands("service shell\n", &["x".repeat(300)]).is_err());
        assert!(manifest_with_commands("service names\n", &["ls".into()]).is_err());
    }

    #[test]
    fn extra_files_are_added_with_their_directories() {
        let mut w = newc::Writer::new();
        w.dir("bin", 0o755).file("bin/init", 0o755, b"INIT").dir("etc", 0o755).file("etc/services", 0o644, b"old");
        let original = w.finish();
        let extra = [("bench/a/x".to_string(), b"X".to_vec()), ("bin/y".to_string(), b"Y".to_vec())];
        let bytes = with_manifest_and_files(&original, "new", &extra).unwrap();
        assert_eq!(manifest_of(&bytes).unwrap(), "new");
        let archive = newc::Archive::new(&bytes).unwrap();
        assert!(archive.find("bench").unwrap().is_dir() && archive.find("bench/a").unwrap().is_dir());
        assert_eq!(archive.find("bench/a/x").unwrap().data, b"X");
        assert_eq!(archive.find("bin/y").unwrap().data, b"Y");
        assert_eq!(archive.find("bin/init").unwrap().data, b"INIT");
        assert_eq!(archive.entries().filter(|e| e.name == "bin").count(), 1);
        for bad in ["bin/init", "", "a//b", "../x", "bin"] {
            assert!(with_manifest_and_files(&original, "m", &[(bad.to_string(), Vec::new())]).is_err(), "{bad:?}");
        }
    }
}
