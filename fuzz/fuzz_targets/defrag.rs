//! The `defrag` target: its body is `statewall::fuzzing::defrag` (documented there), shared with
//! the normal suite's smoke run (`tests/fuzz_smoke.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| statewall::fuzzing::defrag(data));
