//! Deterministic simulation of the soft bus: a hundred devices in one process, on a simulated
//! network and clock, each running the real sans-IO state machines of `softbus` (discovery,
//! connections with their Noise sessions, RPC client and server), through loss, duplication,
//! reordering, corruption, partitions and crashes drawn from one printed seed.
//!
//! Design (after FoundationDB and TigerBeetle): nothing here reads a clock, a socket or an
//! entropy source. [`world::World`] owns a queue of timed events and a fault model; every
//! random choice (faults, workload, keys) comes from the run's seed, so a seed replays the
//! same run bit for bit. The harness uses only the crate's public API, as the daemon does, so
//! it tests what a real adapter can do with the state machines.
//!
//! Properties checked (see `docs/softbus/README.md`, "Simulation"):
//! - discovery converges: at the end of every calm window, every live node lists every live
//!   node of its partition that was up for the whole bound (one beacon interval plus the
//!   largest delivery delay); at the end, nodes dead for longer than the peer timeout are
//!   listed by nobody;
//! - every RPC ends exactly once, by its deadline: a response (with the right content), a
//!   server error, a timeout, a cancellation or, when its session ends, an "unavailable"
//!   error; calls of a node that crashed die with it and are counted apart;
//! - nodes nobody trusts (outsiders) never get a response and never reach a service;
//! - no state machine panics, whatever the network does.
//!
//! `cargo test -p softbus --test sim` runs a quick default seed set. `SOFTBUS_SIM_SEEDS`
//! runs others: a comma-separated list of seeds (decimal or `0x` hex) or ranges `a..b`, e.g.
//! `SOFTBUS_SIM_SEEDS=1..200 cargo test -p softbus --release --test sim -- --nocapture`.
//! A failure prints the seed and the command that replays it.

mod net;
mod node;
mod world;

use world::{SimConfig, World};

/// Seeds run by default: few enough to keep `cargo test -p softbus` quick in the debug
/// profile, varied enough to hit partitions, crashes and both kinds of lost connection.
const DEFAULT_SEEDS: &[u64] = &[1, 0x5eed];

/// Prints how to replay a seed if the run panics.
struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\nsoftbus simulation FAILED with seed {:#x}; replay it with:\n  \
                 SOFTBUS_SIM_SEEDS={:#x} cargo test -p softbus --test sim -- --nocapture\n",
                self.0, self.0
            );
        }
    }
}

/// Parses `SOFTBUS_SIM_SEEDS`: `1,2,0x10,5..9`.
fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let number = |s: &str| -> Result<u64, String> {
        let s = s.trim();
        let parsed = match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => s.parse(),
        };
        parsed.map_err(|e| format!("bad seed {s:?}: {e}"))
    };
    let mut seeds = Vec::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        match part.split_once("..") {
            Some((a, b)) => seeds.extend(number(a)?..number(b)?),
            None => seeds.push(number(part)?),
        }
    }
    Ok(seeds)
}

fn seeds() -> Vec<u64> {
    match std::env::var("SOFTBUS_SIM_SEEDS") {
        Ok(text) => parse_seeds(&text).unwrap_or_else(|e| panic!("SOFTBUS_SIM_SEEDS: {e}")),
        Err(_) => DEFAULT_SEEDS.to_vec(),
    }
}

fn run(seed: u64, config: SimConfig) -> world::Report {
    let _guard = SeedGuard(seed);
    let started = std::time::Instant::now();
    let report = World::new(seed, config).run();
    println!("seed {seed:#x}: {report} ({} ms of real time)", started.elapsed().as_millis());
    report
}

#[test]
fn hundred_nodes_converge_and_every_call_ends_once() {
    for seed in seeds() {
        let report = run(seed, SimConfig::default());
        assert!(report.nodes >= 100, "seed {seed:#x}: only {} nodes", report.nodes);
        assert!(report.responses > 100, "seed {seed:#x}: the workload barely ran: {report}");
        assert!(report.discovery_checks > 0, "seed {seed:#x}: discovery never checked");
    }
}

#[test]
fn a_seed_replays_the_same_run() {
    let small = SimConfig { nodes: 12, outsiders: 2, epochs: 2, ..SimConfig::default() };
    let a = run(0xabc, small.clone());
    let b = run(0xabc, small.clone());
    assert_eq!(a, b, "the same seed must give the same run");
    let c = run(0xabd, small);
    assert_ne!(a.trace, c.trace, "another seed should give another run");
}

#[test]
fn seed_lists_parse() {
    assert_eq!(parse_seeds("1, 0x10,3..5").unwrap(), [1, 16, 3, 4]);
    assert!(parse_seeds("x").is_err());
}
