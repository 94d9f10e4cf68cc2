//! Engine throughput on one core:
//!
//! - `established/*`: packets of 1 024 established TCP flows. `ack` replays a ring of pure
//!   ACKs (both directions, constant seq/ack: always valid); `data` sends a 512-byte segment
//!   and its ACK per step, each flow's sequence numbers advancing so every packet stays new
//!   and in window.
//! - `lifecycle/*`: whole connections (SYN, SYN/ACK, ACK, data, ACK, FIN/ACK, FIN/ACK, ACK),
//!   a fresh tuple each time; simulated time advances 1 ms per connection and the table is
//!   swept every 65 536 connections, so TIME_WAIT entries do not pile up (the sweep is part
//!   of the measured cost).
//!
//! Each case asserts afterwards that the engine dropped nothing.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use statewall::conntrack::Limits;
use statewall::engine::{Engine, EngineConfig};
use statewall::testing::{Pair, Side, ACK, FIN, PSH, SYN};
use statewall::{PacketMeta, Timestamp};

const FLOWS: usize = 1024;
const DATA: usize = 512;

/// One address family's packets; the client is the lab's, with port `cport`.
#[derive(Clone, Copy)]
struct Fam {
    v6: bool,
}

impl Fam {
    /// Offset of the TCP header in the packets built here (no IPv6 extension headers).
    fn tcp_off(self) -> usize {
        if self.v6 {
            40
        } else {
            20
        }
    }

    /// A segment of the flow from client port `cport` to port 80: `(seq, ack)`, `len` bytes.
    fn tcp(
        self,
        from_client: bool,
        cport: u16,
        flags: u8,
        (seq, ack): (u32, u32),
        len: usize,
    ) -> Vec<u8> {
        let pair = if self.v6 { Pair::V6 } else { Pair::V4 }.ports(cport, 80);
        let side = if from_client {
            Side::Client
        } else {
            Side::Server
        };
        pair.tcp(side, flags, seq, ack).payload(len).build()
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

const META: PacketMeta<'static> = PacketMeta {
    wire_len: None,
    in_iface: None,
    out_iface: None,
    fastpath: false,
    admitted: false,
    mac: None,
};

fn isn(i: usize) -> (u32, u32) {
    let c = (i as u32).wrapping_mul(0x9e37_79b9);
    (c, c ^ 0x5555_aaaa)
}

/// Opens `FLOWS` connections; returns the engine.
fn established(fam: Fam, now: Timestamp) -> Engine {
    let e = engine();
    for i in 0..FLOWS {
        let port = 10_000 + i as u16;
        let (c, s) = isn(i);
        for (fc, fl, seq, ack) in [
            (true, SYN, c, 0),
            (false, SYN | ACK, s, c + 1),
            (true, ACK, c + 1, s + 1),
        ] {
            let d = e.process(&fam.tcp(fc, port, fl, (seq, ack), 0), &META, now);
            assert!(d.accepted(), "{:?}", d.reason());
        }
    }
    assert_eq!(e.entries(), FLOWS);
    e
}

fn bench_established(c: &mut Criterion, fam: Fam, name: &str) {
    let now = Timestamp::from_secs(1);
    let mut g = c.benchmark_group(format!("established_{name}"));

    // Pure ACKs, both directions.
    let e = established(fam, now);
    let ring: Vec<Vec<u8>> = (0..FLOWS)
        .flat_map(|i| {
            let port = 10_000 + i as u16;
            let (c, s) = isn(i);
            [
                fam.tcp(true, port, ACK, (c + 1, s + 1), 0),
                fam.tcp(false, port, ACK, (s + 1, c + 1), 0),
            ]
        })
        .collect();
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("ack", |b| {
        b.iter(|| {
            let p = &ring[i % ring.len()];
            i += 1;
            black_box(e.process(black_box(p), &META, now))
        })
    });
    let st = e.stats();
    assert_eq!((st.dropped, st.ignored), (0, 0), "{:?}", st.drops);

    // Data and its ACK, sequence numbers advancing.
    let e = established(fam, now);
    let off = fam.tcp_off();
    let mut flows: Vec<(Vec<u8>, Vec<u8>, u32)> = (0..FLOWS)
        .map(|i| {
            let port = 10_000 + i as u16;
            let (c, s) = isn(i);
            (
                fam.tcp(true, port, ACK | PSH, (c + 1, s + 1), DATA),
                fam.tcp(false, port, ACK, (s + 1, c + 1), 0),
                c + 1,
            )
        })
        .collect();
    g.throughput(Throughput::Elements(2));
    let mut i = 0usize;
    g.bench_function("data", |b| {
        b.iter(|| {
            let (data, ack, next) = &mut flows[i % FLOWS];
            i += 1;
            set_u32(data, off + 4, *next);
            *next = next.wrapping_add(DATA as u32);
            set_u32(ack, off + 8, *next);
            black_box(e.process(black_box(data), &META, now));
            black_box(e.process(black_box(ack), &META, now))
        })
    });
    let st = e.stats();
    assert_eq!((st.dropped, st.ignored), (0, 0), "{:?}", st.drops);
    g.finish();
}

fn bench_lifecycle(c: &mut Criterion, fam: Fam, name: &str) {
    let mut g = c.benchmark_group(format!("lifecycle_{name}"));
    let (c0, s0) = (1000u32, 5000u32);
    let d = DATA as u32;
    let mut pkts: Vec<(bool, Vec<u8>)> = [
        (true, SYN, c0, 0, 0),
        (false, SYN | ACK, s0, c0 + 1, 0),
        (true, ACK, c0 + 1, s0 + 1, 0),
        (true, ACK | PSH, c0 + 1, s0 + 1, DATA),
        (false, ACK, s0 + 1, c0 + 1 + d, 0),
        (true, FIN | ACK, c0 + 1 + d, s0 + 1, 0),
        (false, FIN | ACK, s0 + 1, c0 + 2 + d, 0),
        (true, ACK, c0 + 2 + d, s0 + 2, 0),
    ]
    .into_iter()
    .map(|(fc, fl, seq, ack, len)| (fc, fam.tcp(fc, 1, fl, (seq, ack), len)))
    .collect();
    let e = engine();
    let mut n = 0u64;
    g.throughput(Throughput::Elements(1));
    g.bench_function("tcp", |b| {
        b.iter(|| {
            // 1 ms of simulated time per connection; tuples repeat after 16.5 M connections
            // (4.6 h simulated), long after their TIME_WAIT expired.
            n += 1;
            let now = Timestamp::from_millis(1_000 + n);
            if n.is_multiple_of(65_536) {
                e.on_timer(now);
            }
            let host = (n / 64_512 % 256) as u8;
            let port = 1024 + (n % 64_512) as u16;
            for (fc, p) in pkts.iter_mut() {
                fam.retarget(p, *fc, host, port);
                black_box(e.process(black_box(p), &META, now));
            }
        })
    });
    let st = e.stats();
    assert_eq!((st.dropped, st.ignored), (0, 0), "{:?}", st.drops);
    assert!(e.entries() < 300_000, "{}", e.entries());
    g.finish();
}

fn benches(c: &mut Criterion) {
    for (fam, name) in [(Fam { v6: false }, "v4"), (Fam { v6: true }, "v6")] {
        bench_established(c, fam, name);
        bench_lifecycle(c, fam, name);
    }
}

criterion_group!(engine_benches, benches);
criterion_main!(engine_benches);
