//! Lint: rules that can never match because an earlier rule catches everything they would
//! (shadowed rules, exact duplicates) or because their addresses cannot occur together.
//!
//! "Covers" is decided per field (interfaces, protocol, ICMP types, addresses, ports), so it is
//! conservative: a rule covered only by the union of several earlier rules is not reported.
//! Earlier rules with `limit` never shadow, since they fall through once their rate is exceeded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::diag::{Diagnostic, Severity};
use super::load::Loc;
use super::policy::{Addrs, Iface, Match, Policy, Ports, Query};

/// Warnings about the rules of `policy` (with `locs[i]` the location of rule `i`).
///
/// A rule that covers rule `j` matches every packet `j` matches, in particular one
/// representative packet of `j`; so only the index's candidates for that packet are compared,
/// which keeps the lint of large files far from quadratic.
pub(crate) fn lint(policy: &Policy, locs: &[Loc]) -> Vec<Diagnostic> {
    let rules = policy.compiled();
    let mut out = Vec::new();
    let mut candidates = Vec::new();
    for (j, (rule, loc)) in rules.iter().zip(locs).enumerate() {
        let Some(q) = representative(&rule.m) else {
            out.push(loc.diag(Severity::Warning, unsatisfiable_message(&rule.m), None));
            continue;
        };
        candidates.clear();
        policy.candidates(
            &q.query(),
            u32::try_from(j).unwrap_or(u32::MAX),
            &mut candidates,
        );
        candidates.sort_unstable();
        candidates.dedup();
        let earlier = candidates.iter().find_map(|&i| {
            let e = rules.get(i as usize)?;
            (e.limit.is_none() && covers(&e.m, &rule.m)).then_some((e, locs.get(i as usize)?))
        });
        if let Some((e, eloc)) = earlier {
            let same = covers(&rule.m, &e.m)
                && e.info.action == rule.info.action
                && rule.limit.is_none()
                && e.info.log == rule.info.log
                && e.info.label == rule.info.label;
            let msg = if same {
                format!("duplicate of the rule at {}", eloc.short())
            } else {
                format!(
                    "rule never matches: the rule at {} matches everything it does",
                    eloc.short()
                )
            };
            out.push(loc.diag(
                Severity::Warning,
                msg,
                Some(format!("earlier rule: `{}`", e.info.text)),
            ));
        }
    }
    out
}

/// The indexed fields of one packet a rule matches (`None` when it matches none).
struct Representative {
    proto: u8,
    dst: IpAddr,
    dport: u16,
}

impl Representative {
    fn query(&self) -> Query<'static> {
        Query {
            src: self.dst,
            dst: self.dst,
            proto: self.proto,
            sport: 0,
            dport: self.dport,
            icmp_type: None,
            icmp_code: None,
            in_iface: None,
            out_iface: None,
        }
    }
}

/// The protocol a representative packet of an any-protocol rule carries. Only any-protocol
/// rules can cover such a rule, and every protocol's lists hold all of them (if a rule names
/// protocol 255 too, its rules are extra candidates, which is harmless).
const ANY_PROTO_PROBE: u8 = 255;

fn representative(m: &Match) -> Option<Representative> {
    if !m.satisfiable() {
        return None;
    }
    let (s4, s6) = m.src.families();
    let (d4, d6) = m.dst.families();
    let v4 = s4 && d4 && m.proto != Some(58);
    let dst = if v4 {
        IpAddr::V4(
            m.dst
                .v4
                .first()
                .map_or(Ipv4Addr::UNSPECIFIED, |n| n.network()),
        )
    } else if s6 && d6 {
        IpAddr::V6(
            m.dst
                .v6
                .first()
                .map_or(Ipv6Addr::UNSPECIFIED, |n| n.network()),
        )
    } else {
        return None;
    };
    Some(Representative {
        proto: m.proto.unwrap_or(ANY_PROTO_PROBE),
        dst,
        dport: m.dport.as_ref().and_then(|r| r.first()).map_or(0, |r| r.0),
    })
}

fn unsatisfiable_message(m: &Match) -> String {
    let (s4, s6) = m.src.families();
    let (d4, d6) = m.dst.families();
    if (s4 && d4) || (s6 && d6) {
        match m.proto {
            Some(1) => {
                "rule never matches: `icmp` is IPv4 only but the addresses are IPv6 (use `icmpv6`)"
                    .into()
            }
            _ => {
                "rule never matches: `icmpv6` is IPv6 only but the addresses are IPv4 (use `icmp`)"
                    .into()
            }
        }
    } else {
        "rule never matches: its source and destination addresses are of different IP versions"
            .into()
    }
}

/// Whether every packet `b` matches is also matched by `a`.
pub(crate) fn covers(a: &Match, b: &Match) -> bool {
    if a.proto.is_some() && a.proto != b.proto {
        return false;
    }
    let types_ok = match (&a.icmp_types, &b.icmp_types) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(x), Some(y)) => x.iter().zip(y).all(|(x, y)| y & !x == 0),
    };
    types_ok
        && ports_cover(&a.dport, &b.dport)
        && ports_cover(&a.sport, &b.sport)
        && addrs_cover(&a.dst, &b.dst)
        && addrs_cover(&a.src, &b.src)
        && iface_covers(&a.in_iface, &b.in_iface)
        && iface_covers(&a.out_iface, &b.out_iface)
}

fn ports_cover(a: &Ports, b: &Ports) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(a), None) => a.as_slice() == [(0, u16::MAX)],
        (Some(a), Some(b)) => b
            .iter()
            .all(|&(lo, hi)| a.iter().any(|&(alo, ahi)| alo <= lo && hi <= ahi)),
    }
}

fn addrs_cover(a: &Addrs, b: &Addrs) -> bool {
    if a.any {
        return true;
    }
    if b.any {
        return false;
    }
    b.v4.iter().all(|n| a.v4.iter().any(|m| m.contains(n)))
        && b.v6.iter().all(|n| a.v6.iter().any(|m| m.contains(n)))
}

fn iface_covers(a: &Option<Iface>, b: &Option<Iface>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) if a.wildcard => b.name.starts_with(&*a.name),
        (Some(a), Some(b)) => !b.wildcard && a.name == b.name,
    }
}

#[cfg(test)]
mod tests {
    use super::super::load::load_text;
    use super::*;
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
            warnings("allow tcp to 203.0.113.0/24\ndrop tcp from 198.51.100.0/24 to 203.0.113.2 port 80\n"),
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
            vec!["2: rule never matches: `icmp` is IPv4 only but the addresses are IPv6 (use `icmpv6`)"]
        );
        assert!(warnings("allow icmpv6 to { 192.0.2.1, 2001:db8::1 }\n").is_empty());
    }
}
