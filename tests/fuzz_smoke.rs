//! The fuzz targets' smoke run in the normal suite (the campaigns are `scripts/fuzz`, on
//! nightly with libFuzzer): every target body (`statewall::fuzzing`) over its seed corpus,
//! every regression input kept in `fuzz/regressions/TARGET/` (inputs a campaign once crashed
//! on), and a bounded number of random mutations of the seeds, the same every run. Seconds,
//! on the stable toolchain, no instrumented build.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use statewall::fuzzing::{seeds, TARGETS};

/// Random mutations per target.
const MUTATIONS: usize = 3000;

/// One libFuzzer-like mutation: flip, insert, delete, duplicate or splice bytes.
fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.gen_range(1..8) {
        let at = if v.is_empty() {
            0
        } else {
            rng.gen_range(0..v.len())
        };
        match rng.gen_range(0..6) {
            0 if !v.is_empty() => v[at] ^= 1 << rng.gen_range(0..8),
            1 if !v.is_empty() => v[at] = rng.gen(),
            2 => v.insert(at, rng.gen()),
            3 if !v.is_empty() => {
                v.remove(at);
            }
            4 if !other.is_empty() => {
                let from = rng.gen_range(0..other.len());
                let len = rng.gen_range(1..=(other.len() - from).min(64));
                v.splice(at..at, other[from..from + len].iter().copied());
            }
            _ if !v.is_empty() => {
                let end = (at + rng.gen_range(1..16)).min(v.len());
                let chunk = v[at..end].to_vec();
                v.splice(at..at, chunk);
            }
            _ => v.push(rng.gen()),
        }
    }
    v.truncate(16 * 1024);
    v
}

#[test]
fn every_target_survives_its_seeds_regressions_and_mutations() {
    let all = seeds();
    let regressions = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut rng = StdRng::seed_from_u64(0x5741_7445);
    for (target, body) in TARGETS {
        let corpus: Vec<&Vec<u8>> = all
            .iter()
            .filter(|(t, _, _)| *t == target)
            .map(|(_, _, input)| input)
            .collect();
        assert!(!corpus.is_empty(), "no seeds for {target}");
        for input in &corpus {
            body(input);
        }
        let mut kept = 0;
        if let Ok(dir) = std::fs::read_dir(regressions.join(target)) {
            for entry in dir.flatten() {
                body(&std::fs::read(entry.path()).expect("regression input"));
                kept += 1;
            }
        }
        for _ in 0..MUTATIONS {
            let a = corpus[rng.gen_range(0..corpus.len())];
            let b = corpus[rng.gen_range(0..corpus.len())];
            body(&mutate(&mut rng, a, b));
        }
        eprintln!(
            "{target}: {} seeds, {kept} regressions, {MUTATIONS} mutations",
            corpus.len()
        );
    }
}
