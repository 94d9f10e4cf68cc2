//! Lint: rules that can never match because an earlier rule catches everything they would
//! (shadowed rules, exact duplicates) or because their addresses cannot occur together.
//!
//! "Covers" is decided per field (interfaces, protocol, ICMP types, addresses, ports), so it is
//! conservative: a rule covered only by the union of several earlier rules is not reported.
//! Earlier rules with `limit` never shadow, since they fall through once their rate is exceeded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::diag::{Diagnostic, Loc, Severity};
use super::matcher::{Addrs, Iface, Match, Ports, Query};
use super::policy::Policy;
use crate::proto::{self, PortRange};

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
    let v4 = s4 && d4 && m.proto != Some(proto::ICMPV6);
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
        dport: m
            .dport
            .as_ref()
            .and_then(|r| r.first())
            .map_or(0, |r| r.lo()),
    })
}

fn unsatisfiable_message(m: &Match) -> String {
    let (s4, s6) = m.src.families();
    let (d4, d6) = m.dst.families();
    if (s4 && d4) || (s6 && d6) {
        match m.proto {
            Some(proto::ICMP) => {
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
        (Some(a), None) => a.as_slice() == [PortRange::ALL],
        (Some(a), Some(b)) => b.iter().all(|&r| a.iter().any(|ar| ar.covers(r))),
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

// The tests read rule text through the loader, which imports this file; in lint/tests.rs they
// keep this file from importing the loader back.
#[cfg(test)]
mod tests;
