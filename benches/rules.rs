//! Cost of judging a new connection against 10, 1 000 and 10 000 generated rules, with the
//! query matching the last rule ("late") or no rule at all ("miss"); the linear walk is
//! measured alongside to show what the index saves. Also the cost of loading (parse, compile,
//! lint) the same files.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use statewall::rules::{load_str, Policy, Query, RuleAction};
use statewall::Timestamp;

/// A small deterministic generator (xorshift64*), so every run benches the same rules.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` rules over 10.0.0.0/8: TCP/UDP with single ports, port lists, ranges or any port,
/// some ICMP; destinations /16, /24 or /32, sources any or a /16. The last rule is the one
/// the "late" query hits: TCP to 172.16.0.1 port 443, which nothing else covers.
fn rules_text(n: usize) -> String {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut s = String::from("policy drop\n");
    for _ in 0..n.saturating_sub(1) {
        let action = ["allow", "drop", "reject"][rng.below(3) as usize];
        let a = rng.below(256);
        let b = rng.below(256);
        let c = rng.below(256);
        let dst = match rng.below(3) {
            0 => format!("10.{a}.0.0/16"),
            1 => format!("10.{a}.{b}.0/24"),
            _ => format!("10.{a}.{b}.{c}"),
        };
        let src = if rng.below(4) == 0 {
            format!("10.{b}.0.0/16")
        } else {
            "any".into()
        };
        let line = match rng.below(10) {
            0 => format!("{action} icmp from {src} to {dst}"),
            1..=5 => {
                let proto = if rng.below(3) == 0 { "udp" } else { "tcp" };
                let p = 1 + rng.below(60000);
                format!("{action} {proto} from {src} to {dst} port {p}")
            }
            6 | 7 => {
                let p = 1 + rng.below(60000);
                format!(
                    "{action} tcp from {src} to {dst} port {{ {p}, {}, {} }}",
                    p + 7,
                    p + 100
                )
            }
            8 => {
                let p = 1024 + rng.below(50000);
                format!("{action} tcp from {src} to {dst} port {p}-{}", p + 1000)
            }
            _ => format!("{action} udp from {src} to {dst}"),
        };
        s.push_str(&line);
        s.push('\n');
    }
    s.push_str("allow tcp from any to 172.16.0.1 port 443\n");
    s
}

fn policy(n: usize) -> Policy {
    match load_str("bench.rules", &rules_text(n)) {
        Ok(l) => l.policy,
        Err(d) => panic!("generated rules do not load: {}", d[0]),
    }
}

fn query(dst: [u8; 4]) -> Query<'static> {
    Query {
        src: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
        dst: IpAddr::V4(Ipv4Addr::from(dst)),
        proto: 6,
        sport: 40000,
        dport: 443,
        icmp_type: None,
        icmp_code: None,
        in_iface: Some("g0"),
        out_iface: Some("g1"),
    }
}

fn bench_evaluate(c: &mut Criterion) {
    let mut g = c.benchmark_group("evaluate");
    let now = Timestamp::from_secs(1);
    for n in [10usize, 1_000, 10_000] {
        let p = policy(n);
        let late = query([172, 16, 0, 1]);
        let miss = query([10, 1, 2, 3]);
        assert_eq!(p.evaluate(&late, now).rule.map(|r| r.id), Some(n - 1));
        assert_eq!(p.evaluate(&late, now).action, RuleAction::Allow);
        assert_eq!(
            p.evaluate(&miss, now).rule.map(|r| r.id),
            p.evaluate_linear(&miss, now).rule.map(|r| r.id)
        );
        g.bench_with_input(BenchmarkId::new("indexed_late", n), &late, |b, q| {
            b.iter(|| black_box(p.evaluate(black_box(q), now).action))
        });
        g.bench_with_input(BenchmarkId::new("indexed_miss", n), &miss, |b, q| {
            b.iter(|| black_box(p.evaluate(black_box(q), now).action))
        });
        g.bench_with_input(BenchmarkId::new("linear_late", n), &late, |b, q| {
            b.iter(|| black_box(p.evaluate_linear(black_box(q), now).action))
        });
    }
    g.finish();
}

fn bench_load(c: &mut Criterion) {
    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    for n in [10usize, 1_000, 10_000] {
        let text = rules_text(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, t| {
            b.iter(|| black_box(load_str("bench.rules", t).is_ok()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_evaluate, bench_load);
criterion_main!(benches);
