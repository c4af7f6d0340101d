//! The server's state on the file-system service: the key store, the trust store and the
//! permission policy, in the same formats as `tuttid`'s (`identity.key`, `trust.bin`,
//! `policy.json`; docs/softbus/wire.md, docs/softbus/daemon.md).
//!
//! Design: the directory is `/disk/softbus` (the persistent ext2 disk) unless the manifest
//! names another; without a disk it falls back to `/tmp/softbus` and says that the device
//! will get a new identity at the next boot. A file is replaced by writing a temporary file
//! and renaming it over the old one, so a crash leaves the old or the new store, never half.
//! The file is fsynced before the rename and the file system synced after it, so a store
//! written is durable when the call returns. A corrupt store is reported and the server stops: it never silently makes a new identity
//! over an old one (peers would stop trusting it) or forgets who it trusts.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use softbus::capability::{Decision, Policy};
use softbus::identity::Identity;
use softbus::trust::TrustStore;
use svc::fs::{self, Fs};

/// The key store's file name.
pub const KEYSTORE_FILE: &str = "identity.key";
/// The trust store's file name.
pub const TRUST_FILE: &str = "trust.bin";
/// The permission policy's file name (`busvc::policy`, the format of `tuttid`'s).
pub const POLICY_FILE: &str = "policy.json";

/// Where the state lives.
pub struct Store {
    /// The file-system client, for the life of the server (open files borrow it).
    pub fs: &'static Fs,
    pub dir: String,
}

impl Store {
    /// Opens (creating) the state directory `dir`, or `/tmp/softbus` when `dir` cannot be
    /// made; the second value says whether the fallback was taken.
    pub fn open(fs: Fs, dir: &str) -> Result<(Store, bool), String> {
        let fs: &'static Fs = alloc::boxed::Box::leak(alloc::boxed::Box::new(fs));
        let make = |fs: &Fs, dir: &str| -> Result<(), fs::Error> {
            match fs.mkdir(dir, 0o700) {
                Ok(()) | Err(fs::Error::Exists) => Ok(()),
                Err(e) => Err(e),
            }
        };
        match make(fs, dir) {
            Ok(()) => Ok((Store { fs, dir: dir.into() }, false)),
            Err(e) => {
                rt::log::warn!("cannot use {dir} ({}); keeping the state in /tmp/softbus", e.text());
                make(fs, "/tmp/softbus").map_err(|e| format!("cannot make /tmp/softbus: {}", e.text()))?;
                Ok((Store { fs, dir: "/tmp/softbus".into() }, true))
            }
        }
    }

    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.dir)
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        match self.fs.read_file_limited(&self.path(name), 1 << 20) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(fs::Error::NotFound) => Ok(None),
            Err(e) => Err(format!("cannot read {}: {}", self.path(name), e.text())),
        }
    }

    /// Replaces `name` with `bytes` (temporary file, then rename), mode 0600.
    fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), String> {
        let temp = self.path(&format!(".{name}.new"));
        let fail = |e: fs::Error| format!("cannot write {}: {}", self.path(name), e.text());
        let mut file =
            self.fs.open(&temp, fs::flags::WRITE | fs::flags::CREATE | fs::flags::TRUNCATE, 0o600).map_err(fail)?;
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = file.write(rest).map_err(fail)?;
            if n == 0 {
                return Err(fail(fs::Error::NoSpace));
            }
            rest = &rest[n..];
        }
        file.fsync().map_err(fail)?;
        file.close().map_err(fail)?;
        self.fs.rename(&temp, &self.path(name)).map_err(fail)?;
        // The rename is in the directory, which the file's fsync does not cover: without this
        // a machine killed right after a pairing forgot it (the soft bus nodes test).
        self.fs.sync().map_err(fail)
    }

    /// The device's identity: loaded, or made by `generate` and saved when there is none.
    /// The second value says whether it was made now.
    pub fn identity(&self, generate: impl FnOnce() -> Identity) -> Result<(Identity, bool), String> {
        if let Some(bytes) = self.read(KEYSTORE_FILE)? {
            return Identity::from_keystore_bytes(&bytes).map(|id| (id, false)).map_err(|e| {
                format!("{} is unusable: {e}; move it away to make a new identity", self.path(KEYSTORE_FILE))
            });
        }
        let identity = generate();
        self.replace(KEYSTORE_FILE, &identity.to_keystore_bytes())?;
        Ok((identity, true))
    }

    /// The trust store (empty when there is none yet).
    pub fn trust(&self) -> Result<TrustStore, String> {
        match self.read(TRUST_FILE)? {
            None => Ok(TrustStore::new()),
            Some(bytes) => TrustStore::from_bytes(&bytes).map_err(|e| {
                format!("{} is unusable: {e}; move it away to forget every pairing", self.path(TRUST_FILE))
            }),
        }
    }

    /// Saves the trust store.
    pub fn save_trust(&self, trust: &TrustStore) -> Result<(), String> {
        self.replace(TRUST_FILE, &trust.to_bytes())
    }

    /// The permission rules over `default` (none when there is no file yet).
    pub fn policy(&self, default: Decision) -> Result<Policy, String> {
        match self.read(POLICY_FILE)? {
            None => Ok(Policy::new(default)),
            Some(bytes) => busvc::policy::from_json(&bytes, default)
                .map_err(|e| format!("{} is unusable: {e}; fix or move it away", self.path(POLICY_FILE))),
        }
    }

    /// Saves the permission rules.
    pub fn save_policy(&self, policy: &Policy) -> Result<(), String> {
        self.replace(POLICY_FILE, &busvc::policy::to_json(policy))
    }

    /// Seconds since 1970 by the file system's clock (the time of a file written now), 0 if
    /// unknown: Tutti has no other wall clock for programs yet.
    pub fn unix_now(&self) -> u64 {
        let stamp = self.path(".clock");
        match self.fs.write_file(&stamp, b"") {
            Ok(()) => self.fs.stat(&stamp).map_or(0, |s| s.mtime),
            Err(_) => 0,
        }
    }
}
