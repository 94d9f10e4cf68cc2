//! Writes the fuzzers' seed corpora from the packet factory ([`statewall::testing::fuzz_seeds`]):
//! `DIR/engine/NAME` (a conversation as the engine target's records: `[dt, len_lo, len_hi,
//! bytes...]`, 50 ms apart) and `DIR/decode/NAME_I` and `NAME_Iw` (each packet as the decode
//! target's input: a flag byte, a wire length, the packet; without and with a wire length).
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
    let (engine, decode) = (dir.join("engine"), dir.join("decode"));
    std::fs::create_dir_all(&engine)?;
    std::fs::create_dir_all(&decode)?;
    let mut written = 0;
    for (name, packets) in statewall::testing::fuzz_seeds() {
        let mut records = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            let len = u16::try_from(p.len()).expect("a seed packet fits a record");
            records.push(1);
            records.extend_from_slice(&len.to_le_bytes());
            records.extend_from_slice(p);
            let mut plain = vec![0, 0, 0];
            plain.extend_from_slice(p);
            std::fs::write(decode.join(format!("{name}_{i}")), plain)?;
            let mut wire = vec![1];
            wire.extend_from_slice(&(len + 100).to_le_bytes());
            wire.extend_from_slice(p);
            std::fs::write(decode.join(format!("{name}_{i}w")), wire)?;
            written += 2;
        }
        std::fs::write(engine.join(name), records)?;
        written += 1;
    }
    println!("{written} seeds written under {}", dir.display());
    Ok(())
}
