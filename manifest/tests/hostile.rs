//! The manifest parser against hostile input: random bytes, random token soup and mutations
//! of a good manifest never panic, and every error names a line that exists.

use manifest::{parse, Error, Problem, ERRORS_MAX};
use proptest::prelude::*;

const GOOD: &str = include_str!("../../bootfs/etc/services");

fn lines(bytes: &[u8]) -> usize {
    bytes.split(|&b| b == b'\n').count()
}

fn check_errors(bytes: &[u8], errors: &[Error]) {
    assert!(!errors.is_empty());
    assert!(errors.len() <= ERRORS_MAX + 1);
    for e in errors {
        assert!(e.line >= 1 && e.line <= lines(bytes), "line {} of {}", e.line, lines(bytes));
        let text = e.to_string();
        assert!(text.starts_with(&format!("line {}: ", e.line)));
        assert!(!text.chars().any(|c| c.is_control()), "{text:?}");
        assert!(text.len() < 400, "{text}");
    }
}

fn check(bytes: &[u8]) {
    match parse(bytes) {
        Ok(m) => {
            for s in &m.services {
                assert!(manifest::valid_name(&s.name));
                assert!(s.program.starts_with('/'));
                assert!(s.priority <= manifest::PRIORITY_MAX);
                assert!(s.backoff.initial_ms <= s.backoff.max_ms);
            }
        }
        Err(errors) => check_errors(bytes, &errors),
    }
}

#[test]
fn the_shipped_manifest_is_valid() {
    let m = parse(GOOD.as_bytes()).unwrap_or_else(|e| panic!("{:?}", manifest::report(&e)));
    assert!(m.service("names").is_some());
    assert!(m.service("console").is_some());
}

/// A deterministic corpus: every single-byte deletion, and a set of byte substitutions at
/// every position, of the shipped manifest. Runs the same on every machine.
#[test]
fn mutation_corpus() {
    let good = GOOD.as_bytes();
    for i in 0..good.len() {
        let mut cut = good.to_vec();
        cut.remove(i);
        check(&cut);
        for b in [0u8, b'\n', b' ', b'#', b'-', b'x', b'9', 0xff, 0x80] {
            let mut m = good.to_vec();
            m[i] = b;
            check(&m);
        }
    }
    // Truncations at every length.
    for n in 0..good.len() {
        check(&good[..n]);
    }
}

const WORDS: &[&str] = &[
    "service",
    "program",
    "priority",
    "quota",
    "restart",
    "backoff",
    "ports",
    "irq",
    "device-memory",
    "endpoint",
    "console",
    "shutdown-on-exit",
    "names",
    "a",
    "b",
    "/bin/a",
    "always",
    "never",
    "on-failure",
    "0x3f8-0x3ff",
    "4",
    "99",
    "10ms",
    "2s",
    "0",
    "-",
    "0x",
    "18446744073709551616",
    "1G",
    "4K",
    "#",
    "\t",
    "0xfd000000",
];

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check(&bytes);
    }

    #[test]
    fn random_token_soup_never_panics(
        lines in proptest::collection::vec(proptest::collection::vec(0..WORDS.len(), 0..5), 0..40)
    ) {
        let text: String = lines
            .iter()
            .map(|l| l.iter().map(|&i| WORDS[i]).collect::<Vec<_>>().join(" ") + "\n")
            .collect();
        check(text.as_bytes());
    }

    #[test]
    fn a_bad_line_is_reported_at_its_line(at in 0usize..20, junk in "[a-z]{1,12}") {
        prop_assume!(!["service", "program", "priority", "quota", "restart", "backoff", "ports", "irq",
            "endpoint", "console"].contains(&junk.as_str()));
        let mut lines: Vec<String> = GOOD.lines().map(String::from).collect();
        let at = at.min(lines.len());
        lines.insert(at, format!("{junk} 1"));
        let text = lines.join("\n");
        let errors = parse(text.as_bytes()).unwrap_err();
        prop_assert_eq!(errors.len(), 1);
        prop_assert_eq!(errors[0].line, at + 1);
        let is_unknown = matches!(errors[0].problem, Problem::UnknownKeyword(_) | Problem::OutsideService(_));
        prop_assert!(is_unknown);
    }
}
