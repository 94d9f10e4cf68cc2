//! The engine's per-packet work for instruction counting (`scripts/bench-instr` runs it under
//! callgrind): the cases of `benches/engine.rs` without criterion, a fixed number of times.
//!
//! `cargo run --release --example engine_instr -- CASE N`, CASE one of `ack4`, `data4`,
//! `life4`, `ack6`, `data6`, `life6`:
//!
//! - `ack*`: N pure ACKs (both directions, constant seq/ack) over 1 024 established flows;
//! - `data*`: N packets, a 512-byte segment and its ACK in turn, sequence numbers advancing;
//! - `life*`: N whole connections (SYN, SYN/ACK, ACK, data, ACK, FIN/ACK, FIN/ACK, ACK), a fresh
//!   tuple each, 1 ms of simulated time per connection, swept every 65 536 connections.
//!
//! The cost of one element is the difference of two runs' instruction counts divided by the
//! difference of their N (setup and exit cancel out). The example builds its packets with
//! etherparse and uses only API the engine had before the restructure (02d3acf) too, so the
//! script can run the same file on an older commit (`on_timer` was `sweep` there).

use std::hint::black_box;

use etherparse::PacketBuilder;
use statewall::conntrack::Limits;
use statewall::engine::{Engine, EngineConfig};
use statewall::{PacketMeta, Timestamp};

const C4: [u8; 4] = [198, 51, 100, 2];
const S4: [u8; 4] = [203, 0, 113, 2];
const C6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const S6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

const FLOWS: usize = 1024;
const DATA: usize = 512;

const SYN: u8 = 1;
const ACK: u8 = 2;
const FIN: u8 = 4;
const PSH: u8 = 8;

/// One address family's packets; the client is `C4`/`C6` with port `cport`, the server port 80.
#[derive(Clone, Copy)]
struct Fam {
    v6: bool,
}

/// One TCP segment to build: direction, flags, sequence and acknowledgment numbers, length.
#[derive(Clone, Copy)]
struct Seg {
    from_client: bool,
    flags: u8,
    seq: u32,
    ack: u32,
    len: usize,
}

impl Fam {
    /// Offset of the TCP header in the packets built here.
    fn tcp_off(self) -> usize {
        if self.v6 {
            40
        } else {
            20
        }
    }

    fn tcp(self, cport: u16, s: Seg) -> Vec<u8> {
        let (sp, dp) = if s.from_client {
            (cport, 80)
        } else {
            (80, cport)
        };
        let ip = match (self.v6, s.from_client) {
            (false, true) => PacketBuilder::ipv4(C4, S4, 64),
            (false, false) => PacketBuilder::ipv4(S4, C4, 64),
            (true, true) => PacketBuilder::ipv6(C6, S6, 64),
            (true, false) => PacketBuilder::ipv6(S6, C6, 64),
        };
        let mut b = ip.tcp(sp, dp, s.seq, 64000);
        if s.flags & SYN != 0 {
            b = b.syn();
        }
        if s.flags & ACK != 0 {
            b = b.ack(s.ack);
        }
        if s.flags & FIN != 0 {
            b = b.fin();
        }
        if s.flags & PSH != 0 {
            b = b.psh();
        }
        let mut out = Vec::new();
        if let Err(e) = b.write(&mut out, &vec![0u8; s.len]) {
            panic!("building a packet: {e}");
        }
        out
    }

    /// Rewrites the client's port and the client address's last byte (the engine verifies no
    /// checksum).
    fn retarget(self, pkt: &mut [u8], from_client: bool, host: u8, cport: u16) {
        let (src, dst) = if self.v6 { (8, 24) } else { (12, 16) };
        let alen = if self.v6 { 16 } else { 4 };
        let addr = if from_client { src } else { dst };
        pkt[addr + alen - 1] = host;
        let port = self.tcp_off() + if from_client { 0 } else { 2 };
        pkt[port..port + 2].copy_from_slice(&cport.to_be_bytes());
    }
}

fn seg(from_client: bool, flags: u8, seq: u32, ack: u32, len: usize) -> Seg {
    Seg {
        from_client,
        flags,
        seq,
        ack,
        len,
    }
}

fn set_u32(pkt: &mut [u8], at: usize, v: u32) {
    pkt[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn engine() -> Engine {
    Engine::new(EngineConfig {
        limits: Limits {
            max_entries: 1 << 20,
            per_source: 1 << 20,
            ..Limits::default()
        },
        ..EngineConfig::default()
    })
}

fn isn(i: usize) -> (u32, u32) {
    let c = (i as u32).wrapping_mul(0x9e37_79b9);
    (c, c ^ 0x5555_aaaa)
}

/// Opens `FLOWS` connections; returns the engine.
fn established(fam: Fam, meta: &PacketMeta, now: Timestamp) -> Engine {
    let e = engine();
    for i in 0..FLOWS {
        let port = 10_000 + i as u16;
        let (c, s) = isn(i);
        for sg in [
            seg(true, SYN, c, 0, 0),
            seg(false, SYN | ACK, s, c + 1, 0),
            seg(true, ACK, c + 1, s + 1, 0),
        ] {
            let d = e.process(&fam.tcp(port, sg), meta, now);
            assert!(d.accepted());
        }
    }
    assert_eq!(e.entries(), FLOWS);
    e
}

/// `n` pure ACKs over the established flows.
#[inline(never)]
fn ack(fam: Fam, n: usize) -> Engine {
    let meta = PacketMeta::default();
    let now = Timestamp::from_secs(1);
    let e = established(fam, &meta, now);
    let ring: Vec<Vec<u8>> = (0..FLOWS)
        .flat_map(|i| {
            let port = 10_000 + i as u16;
            let (c, s) = isn(i);
            [
                fam.tcp(port, seg(true, ACK, c + 1, s + 1, 0)),
                fam.tcp(port, seg(false, ACK, s + 1, c + 1, 0)),
            ]
        })
        .collect();
    for i in 0..n {
        black_box(e.process(black_box(&ring[i % ring.len()]), &meta, now));
    }
    e
}

/// `n` packets: segments of 512 bytes and their ACKs in turn.
#[inline(never)]
fn data(fam: Fam, n: usize) -> Engine {
    let meta = PacketMeta::default();
    let now = Timestamp::from_secs(1);
    let e = established(fam, &meta, now);
    let off = fam.tcp_off();
    let mut flows: Vec<(Vec<u8>, Vec<u8>, u32)> = (0..FLOWS)
        .map(|i| {
            let port = 10_000 + i as u16;
            let (c, s) = isn(i);
            (
                fam.tcp(port, seg(true, ACK | PSH, c + 1, s + 1, DATA)),
                fam.tcp(port, seg(false, ACK, s + 1, c + 1, 0)),
                c + 1,
            )
        })
        .collect();
    for i in 0..n / 2 {
        let (data, ack, next) = &mut flows[i % FLOWS];
        set_u32(data, off + 4, *next);
        *next = next.wrapping_add(DATA as u32);
        set_u32(ack, off + 8, *next);
        black_box(e.process(black_box(data), &meta, now));
        black_box(e.process(black_box(ack), &meta, now));
    }
    e
}

/// `n` whole connections.
#[inline(never)]
fn life(fam: Fam, n: usize) -> Engine {
    let meta = PacketMeta::default();
    let (c0, s0) = (1000u32, 5000u32);
    let d = DATA as u32;
    let mut pkts: Vec<(bool, Vec<u8>)> = [
        seg(true, SYN, c0, 0, 0),
        seg(false, SYN | ACK, s0, c0 + 1, 0),
        seg(true, ACK, c0 + 1, s0 + 1, 0),
        seg(true, ACK | PSH, c0 + 1, s0 + 1, DATA),
        seg(false, ACK, s0 + 1, c0 + 1 + d, 0),
        seg(true, FIN | ACK, c0 + 1 + d, s0 + 1, 0),
        seg(false, FIN | ACK, s0 + 1, c0 + 2 + d, 0),
        seg(true, ACK, c0 + 2 + d, s0 + 2, 0),
    ]
    .into_iter()
    .map(|s| (s.from_client, fam.tcp(1, s)))
    .collect();
    let e = engine();
    for n in 1..=n as u64 {
        let now = Timestamp::from_millis(1_000 + n);
        if n.is_multiple_of(65_536) {
            e.on_timer(now);
        }
        let host = (n / 64_512 % 256) as u8;
        let port = 1024 + (n % 64_512) as u16;
        for (fc, p) in pkts.iter_mut() {
            fam.retarget(p, *fc, host, port);
            black_box(e.process(black_box(p), &meta, now));
        }
    }
    e
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (case, n) = match args.as_slice() {
        [_, case, n] => match n.parse::<usize>() {
            Ok(n) => (case.as_str(), n),
            Err(e) => panic!("N {n:?}: {e}"),
        },
        _ => panic!("usage: engine_instr ack4|data4|life4|ack6|data6|life6 N"),
    };
    let (kind, fam) = case.split_at(case.len().saturating_sub(1));
    let fam = match fam {
        "4" => Fam { v6: false },
        "6" => Fam { v6: true },
        _ => panic!("unknown case {case:?}"),
    };
    let e = match kind {
        "ack" => ack(fam, n),
        "data" => data(fam, n),
        "life" => life(fam, n),
        _ => panic!("unknown case {case:?}"),
    };
    let st = e.stats();
    assert_eq!((st.dropped, st.ignored), (0, 0));
    println!("{case} {n}: {} entries", e.entries());
}
