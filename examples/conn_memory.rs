//! Memory per tracked connection: opens exactly `N` (default 1 000 000) established TCP
//! connections through `Engine::process` (SYN, SYN/ACK, ACK each) and prints the growth of
//! the resident set.
//!
//! ```text
//! cargo run --release --example conn_memory -- [v4|v6] [one|many] [N]
//! ```
//!
//! `one`: a single client address (ports and server addresses vary), so the per-source map
//! holds one entry; `many`: IPv4 spreads over the 256 documentation addresses of
//! 198.51.100.0/24, IPv6 gives every connection its own client address in 2001:db8::/32 (a
//! million per-source entries).

use std::time::Instant;

use etherparse::PacketBuilder;
use statewall::conntrack::Limits;
use statewall::engine::{Engine, EngineConfig};
use statewall::{PacketMeta, Timestamp};

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// Client and server address and the client port of connection `i`.
fn tuple(v6: bool, many: bool, i: u32) -> (Vec<u8>, Vec<u8>, u16) {
    if v6 {
        let mut c = vec![0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let mut s = vec![0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        if many {
            c[12..16].copy_from_slice(&i.to_be_bytes());
            (c, s, 40_000)
        } else {
            s[12..16].copy_from_slice(&(i / 50_000).to_be_bytes());
            (c, s, 1024 + (i % 50_000) as u16)
        }
    } else if many {
        let c = vec![198, 51, 100, (i % 256) as u8];
        let s = vec![203, 0, 113, (i / 256 % 256) as u8];
        (c, s, 1024 + (i / 65_536) as u16)
    } else {
        let c = vec![198, 51, 100, 2];
        let s = vec![203, 0, 113, (i / 50_000) as u8];
        (c, s, 1024 + (i % 50_000) as u16)
    }
}

/// SYN, SYN/ACK, ACK templates for a client on port 1 (addresses and ports are patched per
/// connection; the engine verifies no checksum).
fn templates(v6: bool) -> [(bool, Vec<u8>); 3] {
    let build = |from_client: bool, syn: bool, seq: u32, ack: Option<u32>| {
        let ip = if v6 {
            PacketBuilder::ipv6([0; 16], [0; 16], 64)
        } else {
            PacketBuilder::ipv4([0; 4], [0; 4], 64)
        };
        let (sp, dp) = if from_client { (1, 443) } else { (443, 1) };
        let mut b = ip.tcp(sp, dp, seq, 64000);
        if syn {
            b = b.syn();
        }
        if let Some(a) = ack {
            b = b.ack(a);
        }
        let mut out = Vec::new();
        b.write(&mut out, &[]).expect("write");
        (from_client, out)
    };
    [
        build(true, true, 1000, None),
        build(false, true, 9000, Some(1001)),
        build(true, false, 1001, Some(9001)),
    ]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let v6 = args.iter().any(|a| a == "v6");
    let many = args.iter().any(|a| a == "many");
    let n: u32 = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);

    let engine = Engine::new(EngineConfig {
        limits: Limits {
            max_entries: n as usize,
            per_source: usize::MAX,
            ..Limits::default()
        },
        ..EngineConfig::default()
    });
    let meta = PacketMeta::default();
    let now = Timestamp::from_secs(1);
    let mut pkts = templates(v6);
    let (src, dst, alen, tcp) = if v6 { (8, 24, 16, 40) } else { (12, 16, 4, 20) };

    let before = rss_bytes();
    let t0 = Instant::now();
    for i in 0..n {
        let (c, s, cport) = tuple(v6, many, i);
        for (from_client, p) in pkts.iter_mut() {
            let (a, b) = if *from_client { (&c, &s) } else { (&s, &c) };
            p[src..src + alen].copy_from_slice(a);
            p[dst..dst + alen].copy_from_slice(b);
            let port = tcp + if *from_client { 0 } else { 2 };
            p[port..port + 2].copy_from_slice(&cport.to_be_bytes());
            let d = engine.process(p, &meta, now);
            assert!(d.accepted(), "connection {i}: {:?}", d.reason());
        }
    }
    let elapsed = t0.elapsed();
    let after = rss_bytes();
    assert_eq!(engine.entries(), n as usize);
    let delta = after.saturating_sub(before);
    println!(
        "family={} sources={} entries={} rss_delta_bytes={} bytes_per_conn={:.1} secs={:.2}",
        if v6 { "v6" } else { "v4" },
        if many { "many" } else { "one" },
        engine.entries(),
        delta,
        delta as f64 / f64::from(n),
        elapsed.as_secs_f64(),
    );
}
