//! Tests of the lint, through the loader (which runs it on every file it loads).

use super::*;
use crate::rules::load::load_text;
use proptest::prelude::*;

/// The quadratic definition: the first earlier rule without `limit` that covers.
fn naive(policy: &Policy) -> Vec<Option<usize>> {
    let rules = policy.compiled();
    (0..rules.len())
        .map(|j| {
            if !rules[j].m.satisfiable() {
                return None;
            }
            (0..j).find(|&i| rules[i].limit.is_none() && covers(&rules[i].m, &rules[j].m))
        })
        .collect()
}

fn rule_line() -> impl Strategy<Value = String> {
    let addr = prop::sample::select(
        &[
            "any",
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.3",
            "0.0.0.0/0",
            "2001:db8::/32",
            "2001:db8::1",
            "{ 10.1.0.0/16, 2001:db8::/32 }",
        ][..],
    );
    (
        prop::sample::select(&["allow", "drop"][..]),
        prop::sample::select(&["", "tcp", "udp", "icmp", "icmpv6", "proto 255"][..]),
        prop::option::of(addr.clone()),
        prop::option::of(addr),
        prop::option::of(prop::sample::select(
            &["22", "1-100", "0-65535", "{ 22, 80 }", "20-30"][..],
        )),
        prop::option::weighted(0.2, prop::sample::select(&["in g0", "in g+", "out g1"][..])),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(action, proto, from, to, port, iface, limit)| {
            let mut s = format!("{action} {} {proto}", iface.unwrap_or(""));
            if let Some(f) = from {
                s += &format!(" from {f}");
            }
            let to = to.unwrap_or("any");
            s += &format!(" to {to}");
            if let (true, Some(p)) = (proto == "tcp" || proto == "udp", port) {
                s += &format!(" port {p}");
            }
            if limit {
                s += " limit 1/s";
            }
            s
        })
}

proptest! {
    #[test]
    fn indexed_lint_finds_what_the_quadratic_one_does(lines in prop::collection::vec(rule_line(), 1..30)) {
        let text = format!("policy drop\n{}\n", lines.join("\n"));
        let r = load_text("t.rules", &text);
        let policy = r.policy.ok_or_else(|| TestCaseError::fail(format!("{:?}", r.diagnostics)))?;
        let want: Vec<Option<u32>> = naive(&policy)
            .into_iter()
            .map(|i| i.map(|i| u32::try_from(i + 2).unwrap_or(0)))
            .collect();
        // "... the rule at t.rules:N ..." / "duplicate of the rule at t.rules:N" on line j+2.
        let got: Vec<Option<u32>> = (0..policy.rule_count())
            .map(|j| {
                r.diagnostics
                    .iter()
                    .find(|d| d.line as usize == j + 2 && d.message.contains("the rule at t.rules:"))
                    .and_then(|d| d.message.split("t.rules:").nth(1))
                    .and_then(|t| t.split(' ').next())
                    .and_then(|n| n.parse().ok())
            })
            .collect();
        prop_assert!(want.len() == lines.len());
        prop_assert_eq!(got, want, "{}", text);
    }
}

fn warnings(text: &str) -> Vec<String> {
    let r = load_text("t.rules", &format!("policy drop\n{text}"));
    assert!(r.policy.is_some(), "{:?}", r.diagnostics);
    r.diagnostics
        .iter()
        .map(|d| format!("{}: {}", d.line, d.message))
        .collect()
}

#[test]
fn broader_earlier_rule_shadows() {
    assert_eq!(
        warnings(
            "allow tcp to 203.0.113.0/24\ndrop tcp from 198.51.100.0/24 to 203.0.113.2 port 80\n"
        ),
        vec!["3: rule never matches: the rule at t.rules:2 matches everything it does"]
    );
    assert_eq!(
        warnings("allow in g+ tcp\nallow in g0 tcp\n"),
        vec!["3: rule never matches: the rule at t.rules:2 matches everything it does"]
    );
}

#[test]
fn narrower_or_limited_earlier_rule_does_not_shadow() {
    assert!(warnings("allow tcp to 203.0.113.2\ndrop tcp to 203.0.113.0/24\n").is_empty());
    assert!(warnings("allow tcp limit 5/s\ndrop tcp\n").is_empty());
    assert!(warnings("allow in g0 tcp\nallow in g+ tcp\n").is_empty());
    assert!(warnings("allow udp to any port 53\nallow tcp to any port 53\n").is_empty());
    assert!(warnings("allow icmp type echo-request\nallow icmp\n").is_empty());
    assert!(warnings("allow tcp to any port 1-65535\nallow tcp from any port 0\n").is_empty());
}

#[test]
fn full_port_range_covers_any_port() {
    assert_eq!(
        warnings("allow tcp to any port 0-65535\nallow tcp\n"),
        vec!["3: duplicate of the rule at t.rules:2"]
    );
}

#[test]
fn exact_duplicates() {
    assert_eq!(
        warnings("allow tcp to any port { 80, 443 }\nallow tcp to any port { 443, 80 }\n"),
        vec!["3: duplicate of the rule at t.rules:2"]
    );
}

#[test]
fn family_mismatch_never_matches() {
    assert_eq!(
        warnings("allow from 198.51.100.0/24 to 2001:db8::1\n"),
        vec!["2: rule never matches: its source and destination addresses are of different IP versions"]
    );
    assert_eq!(
        warnings("allow icmp to 2001:db8::1\n"),
        vec![
            "2: rule never matches: `icmp` is IPv4 only but the addresses are IPv6 (use `icmpv6`)"
        ]
    );
    assert!(warnings("allow icmpv6 to { 192.0.2.1, 2001:db8::1 }\n").is_empty());
}
