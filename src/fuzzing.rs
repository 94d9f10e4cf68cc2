//! The fuzz targets' bodies, shared by `fuzz/fuzz_targets/` (libFuzzer, nightly, ASan: the
//! on-demand campaigns of `scripts/fuzz`) and `tests/fuzz_smoke.rs` (the normal suite: every
//! seed, every kept regression input and a bounded number of random mutations, in seconds on
//! the stable toolchain). Each body panics on a broken invariant; bad input must never panic.
//!
//! - [`decode`]: `Packet::decode` with an arbitrary claimed wire length.
//! - [`engine`]: packets through an engine with the scan detector and auto-block on, a policy
//!   with `reject`, `limit` and `log` rules, pickup, recheck reloads and timers, every decision's
//!   actions executed into a sink: answers built as packets (`respond`, within the rate limits)
//!   and decoded back, events formatted as syslog lines in both formats.
//! - [`control`]: control protocol request and response lines, round-tripped when valid.
//! - [`rules`]: the rule loader on arbitrary text; a loaded policy is evaluated.
//! - [`config`]: the configuration loader on arbitrary TOML; valid settings build an engine.
//! - [`defrag`]: fragments through `statewall replay`'s reassembler (a small memory limit, time
//!   moving on): what it gives back is a whole datagram whose length fields say its length,
//!   and it never holds much more than its limit.
// A fuzz target reports a broken invariant by panicking: that is its job.
#![allow(clippy::panic)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::config::{Facility, Format, Settings};
use crate::conntrack::{Limits, MAX_DATAGRAMS};
use crate::control::protocol::{Request, Response};
use crate::engine::{Decision, Engine, EngineConfig};
use crate::io::syslog::{format_line, lines, octet_frame, Header};
use crate::packet::{Packet, PacketMeta};
use crate::ratelimit::ProbesConfig;
use crate::respond::{rst_packet, unreachable_packet, ReplyOptions};
use crate::rules::Query;
use crate::scan::ScanConfig;
use crate::time::Timestamp;
use crate::verdict::Action;

/// A target's body: it panics on a broken invariant, never on bad input.
pub type Body = fn(&[u8]);

/// The fuzz targets, by name.
pub const TARGETS: [(&str, Body); 6] = [
    ("decode", decode),
    ("engine", engine),
    ("control", control),
    ("rules", rules),
    ("config", config),
    ("defrag", defrag),
];

/// One flag byte (bit 0: a wire length is given), two bytes of wire length (LE), the packet.
pub fn decode(data: &[u8]) {
    let Some((head, bytes)) = data.split_first_chunk::<3>() else {
        return;
    };
    let wire_len = (head[0] & 1 == 1).then(|| usize::from(u16::from_le_bytes([head[1], head[2]])));
    let meta = PacketMeta {
        wire_len,
        ..PacketMeta::default()
    };
    if let Ok(pkt) = Packet::decode(bytes, &meta) {
        std::hint::black_box(format!("{pkt:?}"));
    }
}

/// Memory limit of the defrag target's reassembler (small, so the limit is reached).
const DEFRAG_LIMIT: usize = 4096;

/// Records of `[dt, len_lo, len_hi, bytes...]` (as [`engine`]'s, `dt` x 1 s) through one
/// reassembler.
pub fn defrag(data: &[u8]) {
    use crate::replay::defrag::{Outcome, Reassembler};
    let mut r = Reassembler::with_limit(DEFRAG_LIMIT);
    let mut now = Duration::ZERO;
    let mut rest = data;
    while let Some((head, tail)) = rest.split_first_chunk::<3>() {
        let len = usize::from(u16::from_le_bytes([head[1], head[2]]));
        let (bytes, next) = tail.split_at(len.min(tail.len()));
        rest = next;
        now += Duration::from_secs(u64::from(head[0]));
        if let Outcome::Complete(whole, n) = r.push(bytes, len, now) {
            assert!(n >= 1, "a datagram of no fragment");
            let declared = match whole.first().map(|b| b >> 4) {
                Some(4) => usize::from(u16::from_be_bytes([whole[2], whole[3]])),
                Some(6) => 40 + usize::from(u16::from_be_bytes([whole[4], whole[5]])),
                other => panic!("reassembled a non-IP datagram: {other:?}"),
            };
            assert_eq!(
                declared,
                whole.len(),
                "length fields of a reassembled datagram"
            );
            if whole[0] >> 4 == 4 {
                assert_eq!(
                    whole[6] & 0x3f,
                    0,
                    "fragment fields left in a whole datagram"
                );
                assert_eq!(whole[7], 0, "fragment offset left in a whole datagram");
            }
            std::hint::black_box(Packet::decode(&whole, &PacketMeta::default()).is_ok());
        }
        // Over the limit it takes nothing more, so at most one fragment's worth above it.
        assert!(
            r.held_bytes() <= 2 * (DEFRAG_LIMIT + 65_535),
            "{}",
            r.held_bytes()
        );
    }
}

/// The engine target's rule file: every action, limits and log lines.
pub const ENGINE_RULES: &str = "policy reject\n\
    allow tcp to any port 80 limit 20/s burst 5 log\n\
    allow tcp to any port 1000-1099\n\
    reject udp to any port 53 log\n\
    drop tcp to any port 22 log\n\
    allow udp to any port 5353 limit 10/s\n\
    allow icmp type echo-request\n\
    allow icmpv6 type echo-request\n";

/// Table size of the engine target (small, so limits and early drop are reached).
const ENGINE_MAX_ENTRIES: usize = 32;

/// Records of `[dt, len_lo, len_hi, bytes...]` through one engine: `dt` advances time by
/// `dt` x 50 ms; 254 reloads the rules with a recheck; 255 jumps 10 minutes and runs the timers.
pub fn engine(data: &[u8]) {
    let scan = ScanConfig {
        block: true,
        block_level: 1,
        ports: Some(3),
        hosts: Some(3),
        stealth: Some(3),
        max_sources: 16,
        max_records: 256,
        max_tombstones: 32,
        ..ScanConfig::default()
    };
    let probes = ProbesConfig {
        burst: 20,
        per_source_burst: 8,
        max_sources: 16,
        ..ProbesConfig::default()
    };
    let engine = Engine::new(EngineConfig {
        limits: Limits {
            max_entries: ENGINE_MAX_ENTRIES,
            per_source: 8,
            early_drop_scan: 16,
            ..Limits::default()
        },
        probes,
        scan: Some(scan),
        ..EngineConfig::default()
    });
    let Ok(loaded) = crate::rules::load_str("fuzz.rules", ENGINE_RULES) else {
        panic!("the engine target's rules load");
    };
    let policy = Arc::new(loaded.policy);
    engine.set_policy(Arc::clone(&policy));
    engine.set_pickup_until(Some(Timestamp::from_secs(3_600)));
    let meta = PacketMeta::default();
    let mut now_ms: u64 = 1_000;
    let mut rest = data;
    while let Some((head, tail)) = rest.split_first_chunk::<3>() {
        let len = usize::from(u16::from_le_bytes([head[1], head[2]])).min(tail.len());
        let (pkt, tail) = tail.split_at(len);
        rest = tail;
        let now = Timestamp::from_millis(now_ms);
        match head[0] {
            255 => {
                now_ms += 600_000;
                let report = engine.on_timer(Timestamp::from_millis(now_ms));
                report.events.iter().for_each(sink_event);
            }
            254 => {
                let r = engine.recheck(&policy, now);
                assert!(
                    r.actions.len() <= 2 * 20,
                    "recheck RSTs beyond the answer budget"
                );
                r.actions.into_iter().for_each(sink_action);
            }
            dt => now_ms += u64::from(dt) * 50,
        }
        let d = engine.process(pkt, &meta, Timestamp::from_millis(now_ms));
        assert!(
            d.action.is_none() || !d.accepted(),
            "only drops are answered"
        );
        assert!(
            engine.entries() <= ENGINE_MAX_ENTRIES,
            "{}",
            engine.entries()
        );
        sink(d);
    }
    let stats = engine.stats();
    assert_eq!(stats.accepted + stats.dropped, stats.packets);
    assert!(engine.blocks(Timestamp::from_millis(now_ms)).len() <= 16);
    assert!(engine.fragment_datagrams() <= MAX_DATAGRAMS);
}

/// What the I/O layer does with a decision, minus the sockets.
fn sink(d: Decision) {
    d.events.iter().for_each(sink_event);
    if let Some(a) = d.action {
        sink_action(a);
    }
}

/// Builds an answer's bytes; whatever statewall sends must decode.
fn sink_action(a: Action) {
    let opts = ReplyOptions { ttl: 64, ip_id: 1 };
    let bytes = match &a {
        Action::SendRst(rst) => rst_packet(rst, &opts),
        Action::SendUnreachable(u) => unreachable_packet(u, &opts),
    };
    if let Some(bytes) = bytes {
        if let Err(e) = Packet::decode(&bytes, &PacketMeta::default()) {
            panic!("an answer statewall builds does not decode ({e:?}): {a:?}");
        }
    }
}

/// Formats an event as syslog lines, both formats and framed (the events syslog carries).
fn sink_event(e: &crate::event::Event) {
    let Some(body) = lines::body(e) else {
        return;
    };
    for format in [Format::Rfc3164, Format::Rfc5424] {
        let h = Header {
            format,
            facility: Facility::Auth,
            host: Some("gw"),
            tag: "statewall",
            pid: 1,
            pen: 32473,
            zone: &crate::time::Zone::UTC,
        };
        let line = format_line(
            &h,
            lines::severity(e),
            UNIX_EPOCH + Duration::from_secs(1),
            &body,
        );
        assert!(!line.contains('\n'), "a syslog line spans lines: {line:?}");
        std::hint::black_box(octet_frame(&line));
    }
}

/// A control line, parsed as a request and as a response; valid ones survive a round trip.
pub fn control(data: &[u8]) {
    if let Ok(req) = Request::from_line(data) {
        let line = req.to_line();
        match Request::from_line(line.as_bytes()) {
            Ok(again) => assert_eq!(again.to_line(), line, "request round trip"),
            Err(e) => panic!("a request's own line does not parse: {line:?}: {e:?}"),
        }
    }
    if let Ok(resp) = Response::from_line(data) {
        let line = resp.to_line();
        match Response::from_line(line.as_bytes()) {
            Ok(again) => assert_eq!(again.to_line(), line, "response round trip"),
            Err(e) => panic!("a response's own line does not parse: {line:?}: {e}"),
        }
    }
}

/// A rule file; a loaded policy judges a few queries of every family and protocol.
pub fn rules(data: &[u8]) {
    // No includes: the loader would read files (relative to the current directory).
    let text = String::from_utf8_lossy(data).replace("include", "inclu_e");
    let Ok(loaded) = crate::rules::load_str("fuzz.rules", &text) else {
        return;
    };
    let addrs: [(IpAddr, IpAddr); 2] = [
        ([198, 51, 100, 2].into(), [203, 0, 113, 2].into()),
        (
            "2001:db8:1::2".parse().unwrap_or(IpAddr::from([0u8; 16])),
            "2001:db8:2::2".parse().unwrap_or(IpAddr::from([0u8; 16])),
        ),
    ];
    for (src, dst) in addrs {
        for (proto, icmp) in [
            (6, None),
            (17, None),
            (1, Some((8, 0))),
            (58, Some((128, 0))),
        ] {
            let q = Query {
                src,
                dst,
                proto,
                sport: 40000,
                dport: 80,
                icmp_type: icmp.map(|(t, _)| t),
                icmp_code: icmp.map(|(_, c)| c),
                in_iface: Some("eth0"),
                out_iface: Some("eth1"),
            };
            let a = loaded.policy.evaluate(&q, Timestamp::from_secs(1)).action;
            let b = loaded.policy.evaluate_tracked(&q).action;
            std::hint::black_box((a, b));
        }
    }
}

/// A configuration file; valid settings build an engine.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(settings) = Settings::from_toml(&text, "fuzz.toml") {
        let mut engine = settings.engine();
        // Keep the tables small: the target checks the path, not the allocator.
        engine.limits.max_entries = engine.limits.max_entries.min(1024);
        std::hint::black_box(Engine::new(engine).entries());
    }
}

/// One engine record: `dt` then the packet.
fn record(out: &mut Vec<u8>, dt: u8, pkt: &[u8]) {
    let len = u16::try_from(pkt.len()).unwrap_or(u16::MAX);
    out.push(dt);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&pkt[..usize::from(len).min(pkt.len())]);
}

/// Conversations beyond [`crate::testing::fuzz_seeds`]: TCP options (MSS, SACK, window scale,
/// timestamps), IPv6 extension headers, fragments (UDP and a TCP segment, both families), ICMP
/// errors quoting tracked flows inside and outside the window, a connect scan (the proof that
/// blocks), a recheck and the timers.
fn engine_conversations() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    use crate::testing::{icmp, ip, Pair, Side, ACK, FIN, PSH, RST, SYN};
    let (c, s) = (Side::Client, Side::Server);
    let mut out = Vec::new();
    for (name, p) in [("4", Pair::V4), ("6", Pair::V6)] {
        let syn = p
            .tcp(c, SYN, 100, 0)
            .mss(1460)
            .sack_permitted()
            .wscale(7)
            .timestamps(1, 0)
            .build();
        let data = p.tcp(c, ACK | PSH, 101, 901).payload(100).build();
        let options = vec![
            syn,
            p.tcp(s, SYN | ACK, 900, 101)
                .sack_permitted()
                .wscale(8)
                .build(),
            p.tcp(c, ACK, 101, 901).build(),
            data.clone(),
            p.tcp(s, ACK, 901, 201).sack(&[(301, 401)]).build(),
            icmp(p.server, p.client).time_exceeded(&data).build(),
            icmp(p.server, p.client)
                .port_unreachable(&p.tcp(c, ACK, 9_000_000, 901).build())
                .build(),
            p.tcp(c, RST | ACK, 201, 901).build(),
        ];
        out.push((if name == "4" { "options4" } else { "options6" }, options));
        let u = p.ports(5353, 5353);
        let first = u.udp(c).payload(1000).id(9).fragment(0, true).build();
        let (src, dst, _, _) = p.from(c);
        let frags = vec![
            u.udp(c).hop_by_hop().dest_options().payload(20).build(),
            first,
            ip(src, dst, 17, &[7; 1000])
                .id(9)
                .fragment(126, true)
                .build(),
            ip(src, dst, 17, &[7; 200])
                .id(9)
                .fragment(252, false)
                .build(),
            ip(src, dst, 17, &[7; 64]).id(10).fragment(8, false).build(),
            p.ports(41000, 80).tcp(c, SYN, 1, 0).build(),
            p.ports(41000, 80).tcp(s, SYN | ACK, 5, 2).build(),
            p.ports(41000, 80).tcp(c, ACK, 2, 6).build(),
            p.ports(41000, 80)
                .tcp(c, ACK | PSH, 2, 6)
                .payload(1004)
                .id(11)
                .fragment(0, true)
                .build(),
            ip(src, dst, 6, &[1; 500])
                .id(11)
                .fragment(128, false)
                .build(),
            p.ports(41000, 80).tcp(s, ACK, 6, 1506).build(),
        ];
        out.push((if name == "4" { "frag4" } else { "frag6" }, frags));
        let mut scan = Vec::new();
        for port in 1000..1006u16 {
            let q = p.ports(42000 + port, port);
            scan.push(q.tcp(c, SYN, 10, 0).build());
            scan.push(q.tcp(s, SYN | ACK, 50, 11).build());
            scan.push(q.tcp(c, ACK, 11, 51).build());
            scan.push(q.tcp(c, FIN | ACK, 11, 51).build());
        }
        for port in 20..26u16 {
            scan.push(p.ports(43000, port).tcp(c, FIN, 1, 0).build());
            scan.push(p.ports(43000, port).udp(c).payload(1).build());
        }
        out.push((if name == "4" { "scan4" } else { "scan6" }, scan));
    }
    out
}

/// The seed corpus of every target: `(target, name, input)`.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut conversations = crate::testing::fuzz_seeds();
    conversations.extend(engine_conversations());
    for (name, packets) in &conversations {
        let mut records = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            record(&mut records, 1, p);
            let len = u16::try_from(p.len()).unwrap_or(u16::MAX);
            let mut plain = vec![0, 0, 0];
            plain.extend_from_slice(p);
            out.push(("decode", format!("{name}_{i}"), plain));
            let mut wire = vec![1];
            wire.extend_from_slice(&len.saturating_add(100).to_le_bytes());
            wire.extend_from_slice(p);
            out.push(("decode", format!("{name}_{i}w"), wire));
        }
        // The same conversation, then a recheck, then the timers.
        let mut again = records.clone();
        if let Some(last) = packets.last() {
            record(&mut again, 254, last);
            record(&mut again, 255, last);
        }
        out.push(("engine", (*name).to_string(), records));
        out.push(("engine", format!("{name}_recheck"), again));
        // Each packet in fragments of 8 and 24 bytes, the second set last fragment first.
        let mut frags = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            record(&mut frags, 0, p);
            for f in crate::testing::fragments(p, 8, i as u32) {
                record(&mut frags, 0, &f);
            }
            for f in crate::testing::fragments(p, 24, i as u32 + 1000)
                .iter()
                .rev()
            {
                record(&mut frags, 1, f);
            }
        }
        out.push(("defrag", (*name).to_string(), frags));
    }
    for (i, line) in [
        r#"{"v":1,"cmd":"status"}"#,
        r#"{"v":1,"cmd":"conns","src":"10.0.0.0/8","port":22,"state":"established"}"#,
        r#"{"v":1,"cmd":"unblock","addr":"203.0.113.9"}"#,
        r#"{"v":1,"cmd":"blocks"}"#,
        r#"{"v":1,"cmd":"reload"}"#,
        r#"{"v":1,"ok":true,"data":{}}"#,
        r#"{"v":1,"ok":false,"error":"rule file rejected","details":["a.rules:3:7: error: x"]}"#,
    ]
    .iter()
    .enumerate()
    {
        out.push(("control", format!("line{i}"), line.as_bytes().to_vec()));
    }
    for (name, text) in [
        ("engine", ENGINE_RULES),
        ("dmz", include_str!("../rules/dmz.rules")),
    ] {
        out.push(("rules", name.to_string(), text.as_bytes().to_vec()));
    }
    let gateway = include_str!("../rules/gateway.rules");
    out.push(("rules", "gateway".to_string(), gateway.as_bytes().to_vec()));
    let example = include_str!("../rules/statewall.toml");
    out.push(("config", "example".to_string(), example.as_bytes().to_vec()));
    out.push((
        "config",
        "sources".to_string(),
        b"[sources]\nipv4 = 24\nipv6 = 56\n[scan]\nblock = true\n".to_vec(),
    ));
    out
}
