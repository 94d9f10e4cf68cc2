//! Lint: rules that can never match because an earlier rule catches everything they would
//! (shadowed rules, exact duplicates) or because their addresses cannot occur together.
//!
//! "Covers" is decided per field (interfaces, protocol, ICMP types, addresses, ports), so it is
//! conservative: a rule covered only by the union of several earlier rules is not reported.
//! Earlier rules with `limit` never shadow, since they fall through once their rate is exceeded.

use super::diag::{Diagnostic, Severity};
use super::load::Loc;
use super::policy::{Addrs, Iface, Match, Ports, Rule};

/// Warnings about `rules` (with `locs[i]` the location of `rules[i]`).
pub(crate) fn lint(rules: &[Rule], locs: &[Loc]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (j, (rule, loc)) in rules.iter().zip(locs).enumerate() {
        if !rule.m.satisfiable() {
            out.push(loc.diag(Severity::Warning, unsatisfiable_message(&rule.m), None));
            continue;
        }
        let earlier = rules[..j]
            .iter()
            .zip(locs)
            .find(|(e, _)| e.limit.is_none() && covers(&e.m, &rule.m));
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
