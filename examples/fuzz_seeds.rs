//! Writes the fuzzers' seed corpora ([`statewall::fuzzing::seeds`]) as `DIR/TARGET/NAME`, for
//! every target (decode, engine, control, rules, config).
//!
//! ```sh
//! cargo run --example fuzz_seeds -- fuzz/corpus
//! ```

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let seeds = statewall::fuzzing::seeds();
    for (target, name, input) in &seeds {
        let d = dir.join(target);
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join(name), input)?;
    }
    println!("{} seeds written under {}", seeds.len(), dir.display());
    Ok(())
}
