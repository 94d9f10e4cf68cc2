//! A sequence of packets through one engine: pickup mode on, small limits (so early drop, the
//! table limit and the per-source limit are reached), time moving forward, periodic sweeps.
//!
//! Input: records of `[dt, len_lo, len_hi, bytes...]`: `dt` advances time by `dt` x 50 ms
//! (255: 10 minutes, past most timeouts, then a sweep), `len` (LE, capped by what is left) is
//! the packet's length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statewall::conntrack::Limits;
use statewall::engine::{Engine, EngineConfig};
use statewall::{PacketMeta, Timestamp};

fuzz_target!(|data: &[u8]| {
    let engine = Engine::new(EngineConfig {
        limits: Limits {
            max_entries: 32,
            per_source: 8,
            early_drop_scan: 16,
            ..Limits::default()
        },
        ..EngineConfig::default()
    });
    engine.set_pickup_until(Some(Timestamp::from_secs(3_600)));
    let meta = PacketMeta::default();
    let mut now_ms: u64 = 1_000;
    let mut rest = data;
    while let Some((head, tail)) = rest.split_first_chunk::<3>() {
        let len = usize::from(u16::from_le_bytes([head[1], head[2]])).min(tail.len());
        let (pkt, tail) = tail.split_at(len);
        rest = tail;
        if head[0] == 255 {
            now_ms += 600_000;
            engine.on_timer(Timestamp::from_millis(now_ms));
        } else {
            now_ms += u64::from(head[0]) * 50;
        }
        // (A decision has a reason exactly when it drops: its type, `Verdict`, says so.)
        let d = engine.process(pkt, &meta, Timestamp::from_millis(now_ms));
        assert!(d.action.is_none() || !d.accepted(), "only drops are answered");
        assert!(engine.entries() <= 32, "{}", engine.entries());
    }
    let stats = engine.stats();
    assert_eq!(stats.accepted + stats.dropped, stats.packets);
});
