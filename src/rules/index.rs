//! The index over a policy's rules: which rules can match a packet, without walking them all.
//!
//! Rules are kept in file order (the rule id is the position). To judge a new connection the
//! policy does not walk every rule: it looks up a handful of *candidate lists* — sorted rule ids —
//! keyed by
//!
//! 1. the IP protocol (rules for `any` protocol are copied into every protocol's lists),
//! 2. for TCP/UDP, the destination port (rules whose destination ports are few are listed under
//!    each port; rules with `any` or wide port ranges go to a per-protocol "any port" list),
//! 3. the destination prefix: one hash map per prefix length present in the rules, keyed by the
//!    masked destination address, plus a list for rules with destination `any`.
//!
//! Every rule that can match a query is in at least one of its candidate lists, so the first
//! match is the lowest id among candidates that fully match. Each list is scanned from its
//! lowest id and stops at the first full match or as soon as it passes the best id found so far.
//! The work per query therefore depends on the number of distinct prefix lengths and on how many
//! rules share the query's (protocol, port, prefix) buckets, not on the total number of rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ahash::AHashMap;

use super::matcher::{Addrs, Match, Query};

/// Rules whose destination port set has at most this many ports are listed under each port.
const PORT_EXPAND_MAX: u32 = 64;

/// Candidate lists by destination prefix.
#[derive(Debug, Default)]
struct DstIndex {
    any: Vec<u32>,
    v4_lens: Vec<u8>,
    v4: AHashMap<(u32, u8), Vec<u32>>,
    v6_lens: Vec<u8>,
    v6: AHashMap<(u128, u8), Vec<u32>>,
}

fn mask_v4(a: Ipv4Addr, len: u8) -> u32 {
    let bits = u32::from(a);
    if len == 0 {
        0
    } else {
        bits & (u32::MAX << (32 - u32::from(len)))
    }
}

fn mask_v6(a: Ipv6Addr, len: u8) -> u128 {
    let bits = u128::from(a);
    if len == 0 {
        0
    } else {
        bits & (u128::MAX << (128 - u32::from(len)))
    }
}

impl DstIndex {
    fn insert(&mut self, id: u32, dst: &Addrs) {
        if dst.any {
            self.any.push(id);
            return;
        }
        for n in &dst.v4 {
            let len = n.prefix_len();
            if !self.v4_lens.contains(&len) {
                self.v4_lens.push(len);
            }
            push_id(
                self.v4.entry((mask_v4(n.addr(), len), len)).or_default(),
                id,
            );
        }
        for n in &dst.v6 {
            let len = n.prefix_len();
            if !self.v6_lens.contains(&len) {
                self.v6_lens.push(len);
            }
            push_id(
                self.v6.entry((mask_v6(n.addr(), len), len)).or_default(),
                id,
            );
        }
    }

    fn finish(&mut self) {
        // Longest prefixes first: specific rules tend to come first in a file.
        self.v4_lens.sort_unstable_by(|a, b| b.cmp(a));
        self.v6_lens.sort_unstable_by(|a, b| b.cmp(a));
    }

    fn for_each_list(&self, dst: IpAddr, f: &mut impl FnMut(&[u32])) {
        match dst {
            IpAddr::V4(a) => {
                for &len in &self.v4_lens {
                    if let Some(l) = self.v4.get(&(mask_v4(a, len), len)) {
                        f(l);
                    }
                }
            }
            IpAddr::V6(a) => {
                for &len in &self.v6_lens {
                    if let Some(l) = self.v6.get(&(mask_v6(a, len), len)) {
                        f(l);
                    }
                }
            }
        }
        if !self.any.is_empty() {
            f(&self.any);
        }
    }
}

fn push_id(list: &mut Vec<u32>, id: u32) {
    if list.last() != Some(&id) {
        list.push(id);
    }
}

/// Candidate lists of one protocol, by destination port.
#[derive(Debug, Default)]
struct ProtoIndex {
    by_dport: AHashMap<u16, DstIndex>,
    any_port: DstIndex,
}

impl ProtoIndex {
    fn insert(&mut self, id: u32, m: &Match) {
        match &m.dport {
            Some(ranges) if ranges.iter().map(|r| r.len()).sum::<u32>() <= PORT_EXPAND_MAX => {
                for r in ranges {
                    for p in r.lo()..=r.hi() {
                        self.by_dport.entry(p).or_default().insert(id, &m.dst);
                    }
                }
            }
            _ => self.any_port.insert(id, &m.dst),
        }
    }

    fn finish(&mut self) {
        self.any_port.finish();
        for d in self.by_dport.values_mut() {
            d.finish();
        }
    }

    fn for_each_list(&self, q: &Query<'_>, f: &mut impl FnMut(&[u32])) {
        if let Some(d) = self.by_dport.get(&q.dport) {
            d.for_each_list(q.dst, f);
        }
        self.any_port.for_each_list(q.dst, f);
    }
}

/// The candidate lists of every rule of a policy.
#[derive(Debug, Default)]
pub(crate) struct Index {
    by_proto: AHashMap<u8, ProtoIndex>,
    /// Rules for any protocol, used for protocols no rule names.
    other: ProtoIndex,
}

impl Index {
    /// The index of `rules`, in evaluation order (the position is the rule id).
    pub(crate) fn build<'a>(rules: impl Iterator<Item = &'a Match> + Clone) -> Index {
        let mut idx = Index::default();
        for m in rules.clone() {
            if let Some(p) = m.proto {
                idx.by_proto.entry(p).or_default();
            }
        }
        for (i, m) in rules.enumerate() {
            let Ok(id) = u32::try_from(i) else { break };
            match m.proto {
                Some(p) => {
                    if let Some(pi) = idx.by_proto.get_mut(&p) {
                        pi.insert(id, m);
                    }
                }
                None => {
                    idx.other.insert(id, m);
                    for pi in idx.by_proto.values_mut() {
                        pi.insert(id, m);
                    }
                }
            }
        }
        idx.other.finish();
        for pi in idx.by_proto.values_mut() {
            pi.finish();
        }
        idx
    }

    /// Calls `f` with every candidate list for `q`: sorted ids, which together hold every rule
    /// that can match `q` (and others).
    pub(crate) fn for_each_list(&self, q: &Query<'_>, f: &mut impl FnMut(&[u32])) {
        self.by_proto
            .get(&q.proto)
            .unwrap_or(&self.other)
            .for_each_list(q, f);
    }
}
