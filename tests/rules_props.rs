//! Property tests: the indexed matcher agrees with a linear first-match walk, lint never calls
//! a rule dead that can match, and no input text panics the loader.

use std::net::IpAddr;

use proptest::prelude::*;
use statewall::rules::{load_str, Policy, Query};
use statewall::Timestamp;

const V4: [&str; 10] = [
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.0/24",
    "10.1.2.3",
    "10.1.2.4/31",
    "10.1.3.0/24",
    "10.200.0.0/12",
    "0.0.0.0/0",
    "192.0.2.0/25",
    "192.0.2.200",
];
const V6: [&str; 6] = [
    "2001:db8::/32",
    "2001:db8:1::/48",
    "2001:db8:1::3",
    "2001:db8:2::/64",
    "::/0",
    "2001:db8:1:0:8000::/65",
];
const HOSTS: [&str; 12] = [
    "10.1.2.3",
    "10.1.2.4",
    "10.1.2.5",
    "10.1.3.9",
    "10.2.0.1",
    "10.200.1.1",
    "192.0.2.200",
    "192.0.2.7",
    "198.51.100.1",
    "2001:db8:1::3",
    "2001:db8:2::9",
    "2001:db8:1:0:8000::1",
];
const PORTS: [&str; 9] = [
    "22",
    "53",
    "80",
    "443",
    "1000-2000",
    "20-30",
    "0-65535",
    "8080",
    "1000-1100",
];
const QPORTS: [u16; 10] = [22, 53, 80, 443, 1500, 25, 0, 8080, 1050, 9];
const IFACES: [&str; 5] = ["g0", "g1", "g+", "ppp+", "+"];
const QIFACES: [&str; 4] = ["g0", "g1", "ppp0", "eth0"];

fn addr() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just("any".to_string()),
        3 => prop::sample::select(&V4[..]).prop_map(str::to_string),
        2 => prop::sample::select(&V6[..]).prop_map(str::to_string),
        1 => prop::collection::vec(
            prop_oneof![prop::sample::select(&V4[..]), prop::sample::select(&V6[..])],
            1..4
        )
        .prop_map(|v| format!("{{ {} }}", v.join(", "))),
        1 => Just("$s".to_string()),
    ]
}

fn ports() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(&PORTS[..]).prop_map(str::to_string),
        prop::collection::vec(prop::sample::select(&PORTS[..]), 1..4)
            .prop_map(|v| format!("{{ {} }}", v.join(", "))),
    ]
}

/// One random rule line.
fn rule() -> impl Strategy<Value = String> {
    let proto = prop::sample::select(&["", "tcp", "udp", "icmp", "icmpv6", "gre", "any"][..]);
    (
        prop::sample::select(&["allow", "drop", "reject"][..]),
        prop::option::weighted(0.2, prop::sample::select(&IFACES[..])),
        prop::option::weighted(0.1, prop::sample::select(&IFACES[..])),
        proto,
        prop::option::weighted(0.5, (addr(), prop::option::weighted(0.2, ports()))),
        prop::option::weighted(0.7, (addr(), prop::option::weighted(0.6, ports()))),
        prop::option::weighted(
            0.3,
            prop::sample::select(&["8", "{ 0, 3 }", "echo-request"][..]),
        ),
        prop::option::weighted(
            0.1,
            prop::sample::select(&["1/s", "2/m", "3/s burst 1"][..]),
        ),
    )
        .prop_map(|(action, iin, iout, proto, from, to, types, limit)| {
            let ported = proto == "tcp" || proto == "udp";
            let mut s = action.to_string();
            if let Some(i) = iin {
                s += &format!(" in {i}");
            }
            if let Some(i) = iout {
                s += &format!(" out {i}");
            }
            if !proto.is_empty() {
                s += &format!(" {proto}");
            }
            for (kw, ep) in [("from", from), ("to", to)] {
                if let Some((a, p)) = ep {
                    s += &format!(" {kw} {a}");
                    if let (true, Some(p)) = (ported, p) {
                        s += &format!(" port {p}");
                    }
                }
            }
            if let (true, Some(t)) = (proto == "icmp" || proto == "icmpv6", types) {
                s += &format!(" type {t}");
            }
            if let Some(l) = limit {
                s += &format!(" limit {l}");
            }
            s
        })
}

fn rule_file() -> impl Strategy<Value = String> {
    prop::collection::vec(rule(), 0..40).prop_map(|rules| {
        format!(
            "policy reject\nset $s = {{ 10.1.0.0/16, 2001:db8:1::/48 }}\n{}\n",
            rules.join("\n")
        )
    })
}

#[derive(Debug, Clone)]
struct Q {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
    icmp_type: Option<u8>,
    in_iface: Option<&'static str>,
    out_iface: Option<&'static str>,
    /// Milliseconds since the previous query.
    gap_ms: u64,
}

fn host() -> impl Strategy<Value = IpAddr> {
    prop::sample::select(&HOSTS[..]).prop_map(|h| h.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])))
}

fn query() -> impl Strategy<Value = Q> {
    (
        host(),
        host(),
        prop::sample::select(&[6u8, 17, 1, 58, 47, 50][..]),
        prop::sample::select(&QPORTS[..]),
        prop::sample::select(&QPORTS[..]),
        prop::option::of(prop::sample::select(&[0u8, 3, 8, 128][..])),
        prop::option::weighted(0.8, prop::sample::select(&QIFACES[..])),
        prop::option::weighted(0.8, prop::sample::select(&QIFACES[..])),
        0u64..700,
    )
        .prop_map(
            |(src, mut dst, proto, sport, dport, icmp_type, in_iface, out_iface, gap_ms)| {
                // Keep both addresses of one family, as on the wire.
                if src.is_ipv4() != dst.is_ipv4() {
                    dst = src;
                }
                let ported = proto == 6 || proto == 17;
                Q {
                    src,
                    dst,
                    proto,
                    sport: if ported { sport } else { 0 },
                    dport: if ported { dport } else { 0 },
                    icmp_type: if ported { None } else { icmp_type },
                    in_iface,
                    out_iface,
                    gap_ms,
                }
            },
        )
}

fn as_query(q: &Q) -> Query<'static> {
    Query {
        src: q.src,
        dst: q.dst,
        proto: q.proto,
        sport: q.sport,
        dport: q.dport,
        icmp_type: q.icmp_type,
        icmp_code: None,
        in_iface: q.in_iface,
        out_iface: q.out_iface,
    }
}

fn load(text: &str) -> Result<(Policy, Vec<u32>), TestCaseError> {
    match load_str("p.rules", text) {
        Ok(l) => {
            let dead = l
                .warnings
                .iter()
                .filter(|w| {
                    w.message.contains("never matches") || w.message.starts_with("duplicate of")
                })
                .map(|w| w.line)
                .collect();
            Ok((l.policy, dead))
        }
        Err(d) => Err(TestCaseError::fail(format!("{text}\n{d:?}"))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn index_agrees_with_linear_walk(text in rule_file(), queries in prop::collection::vec(query(), 1..60)) {
        // Two copies, so that each has its own `limit` buckets and both see the same history.
        let (indexed, dead) = load(&text)?;
        let (linear, _) = load(&text)?;
        let mut now = Timestamp::from_secs(1);
        for q in &queries {
            now = Timestamp::from_nanos(now.as_nanos() + q.gap_ms * 1_000_000);
            let query = as_query(q);
            let a = indexed.evaluate(&query, now);
            let b = linear.evaluate_linear(&query, now);
            prop_assert_eq!(a.action, b.action, "{:?}\n{}", q, text);
            prop_assert_eq!(a.rule.map(|r| r.id), b.rule.map(|r| r.id), "{:?}\n{}", q, text);
            if let Some(r) = a.rule {
                prop_assert!(!dead.contains(&r.line), "lint called line {} dead, but it matched {:?}\n{}", r.line, q, text);
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = load_str("fuzz.rules", &text);
    }

    #[test]
    fn diagnostics_point_into_their_line(lines in prop::collection::vec(
        prop_oneof![".{0,60}", rule(), Just("policy drop".to_string())], 0..12,
    )) {
        let text = lines.join("\n");
        let diags = match load_str("d.rules", &text) {
            Ok(l) => l.warnings,
            Err(d) => {
                prop_assert!(d.iter().any(|x| x.is_error()));
                d
            }
        };
        let source: Vec<&str> = text.lines().collect();
        for d in diags {
            if d.line == 0 {
                prop_assert_eq!(d.to_string().lines().count(), 1);
                continue;
            }
            let line = source.get(d.line as usize - 1).copied().unwrap_or("<none>");
            prop_assert_eq!(d.source_line.as_str(), line);
            prop_assert!(d.col >= 1 && d.col as usize <= line.chars().count() + 1, "{:?}", d);
            let rendered = d.to_string();
            let caret = rendered.lines().nth(2).unwrap_or("");
            prop_assert!(caret.ends_with('^'), "{}", rendered);
            prop_assert_eq!(caret.chars().count(), d.col as usize);
        }
    }

    #[test]
    fn token_soup_never_panics(words in prop::collection::vec(prop::sample::select(&[
        "allow", "drop", "reject", "policy", "probes", "set", "include", "in", "out", "from", "to",
        "port", "proto", "type", "log", "limit", "label", "burst", "tcp", "udp", "icmp", "icmpv6",
        "any", "$s", "$", "{", "}", ",", "=", "\"x\"", "\"", "80", "80-90", "90-80", "70000", "5/s",
        "0/s", "10.0.0.0/8", "10.0.0.1/33", "2001:db8::/129", "::", "g+", "+", "echo-request",
        "#", "\n", "-", "/", "rst", "255", "256", "\t", "é",
    ][..]), 0..40)) {
        let text = words.join(" ");
        let _ = load_str("soup.rules", &format!("set $s = {{ 10.0.0.0/8 }}\n{text}"));
    }
}
