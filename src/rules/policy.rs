//! The compiled policy: rules as matchers, an index over them, and first-match evaluation.
//!
//! # Index
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
//!
//! `limit` is checked only for the rule that would otherwise be the first match; when its rate is
//! exceeded the search continues after it, exactly like a linear walk.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ahash::AHashMap;
use ipnet::{Ipv4Net, Ipv6Net};

use crate::time::Timestamp;
use crate::verdict::ProbeMode;

/// What a rule (or the default policy) does with a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleAction {
    /// Let the connection be tracked and pass.
    Allow,
    /// Drop the packet silently.
    Drop,
    /// Drop the packet and answer with a TCP RST or an ICMP unreachable.
    Reject,
}

impl fmt::Display for RuleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuleAction::Allow => "allow",
            RuleAction::Drop => "drop",
            RuleAction::Reject => "reject",
        })
    }
}

/// Error parsing a [`RuleAction`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseKeywordError {
    /// Not one of `allow`, `drop`, `reject`.
    #[error("unknown action `{0}`: expected allow, drop or reject")]
    Action(String),
}

impl FromStr for RuleAction {
    type Err = ParseKeywordError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(RuleAction::Allow),
            "drop" => Ok(RuleAction::Drop),
            "reject" => Ok(RuleAction::Reject),
            other => Err(ParseKeywordError::Action(other.to_owned())),
        }
    }
}

/// The first packet of a new connection, as the rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number: 6 tcp, 17 udp, 1 icmp, 58 icmpv6.
    pub proto: u8,
    /// Source port, 0 when not TCP/UDP.
    pub sport: u16,
    /// Destination port, 0 when not TCP/UDP.
    pub dport: u16,
    /// ICMP/ICMPv6 type, when the packet is ICMP.
    pub icmp_type: Option<u8>,
    /// ICMP/ICMPv6 code, when the packet is ICMP.
    pub icmp_code: Option<u8>,
    /// NFQUEUE input interface name, if known.
    pub in_iface: Option<&'a str>,
    /// NFQUEUE output interface name, if known.
    pub out_iface: Option<&'a str>,
}

/// Where a rule came from and what it does, for logs, counters and status output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    /// Position in evaluation order, 0-based (usable as an index into per-rule counters).
    pub id: usize,
    /// The file the rule is written in, as named by the admin.
    pub file: Arc<str>,
    /// 1-based line number in `file`.
    pub line: u32,
    /// `label "..."`, if given.
    pub label: Option<String>,
    /// Whether the rule has the `log` option.
    pub log: bool,
    /// What the rule does.
    pub action: RuleAction,
    /// The source line, trimmed (comments included as written).
    pub text: String,
}

/// The verdict for a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome<'p> {
    /// What to do.
    pub action: RuleAction,
    /// The rule that decided, `None` when no rule matched and the default policy decided.
    pub rule: Option<&'p RuleInfo>,
}

// ---------------------------------------------------------------------------------------------
// Matchers

/// A set of addresses: `any`, or lists of networks per family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Addrs {
    pub any: bool,
    pub v4: Vec<Ipv4Net>,
    pub v6: Vec<Ipv6Net>,
}

impl Addrs {
    pub(crate) fn any() -> Addrs {
        Addrs {
            any: true,
            ..Addrs::default()
        }
    }

    /// Sort and merge the networks (an `any` set drops its lists).
    pub(crate) fn normalize(&mut self) {
        if self.any {
            self.v4.clear();
            self.v6.clear();
        } else {
            // Aggregated networks are disjoint; sorted, they allow a binary search.
            self.v4 = Ipv4Net::aggregate(&self.v4);
            self.v4.sort_unstable();
            self.v6 = Ipv6Net::aggregate(&self.v6);
            self.v6.sort_unstable();
        }
    }

    /// Whether `ip` is in the set. Requires [`Addrs::normalize`] to have run: among disjoint
    /// networks, only the one with the highest start at or below `ip` can contain it.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        if self.any {
            return true;
        }
        match ip {
            IpAddr::V4(a) => {
                let i = self.v4.partition_point(|n| n.network() <= a);
                i > 0 && self.v4[i - 1].contains(&a)
            }
            IpAddr::V6(a) => {
                let i = self.v6.partition_point(|n| n.network() <= a);
                i > 0 && self.v6[i - 1].contains(&a)
            }
        }
    }

    /// Can match IPv4 / IPv6 packets.
    pub(crate) fn families(&self) -> (bool, bool) {
        (
            self.any || !self.v4.is_empty(),
            self.any || !self.v6.is_empty(),
        )
    }
}

/// Inclusive port ranges, sorted and merged; `None` in a rule means any port.
pub(crate) type Ports = Option<Vec<(u16, u16)>>;

pub(crate) fn normalize_ports(mut ranges: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    ranges.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn ports_contain(ports: &Ports, port: u16) -> bool {
    match ports {
        None => true,
        Some(r) => r.iter().any(|&(lo, hi)| lo <= port && port <= hi),
    }
}

/// An interface name, or a prefix when written with the trailing `+` wildcard.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Iface {
    pub name: Box<str>,
    pub wildcard: bool,
}

impl Iface {
    fn matches(&self, iface: Option<&str>) -> bool {
        match iface {
            None => false,
            Some(i) if self.wildcard => i.starts_with(&*self.name),
            Some(i) => i == &*self.name,
        }
    }
}

impl fmt::Display for Iface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name, if self.wildcard { "+" } else { "" })
    }
}

/// The static part of a rule: everything but `limit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Match {
    pub in_iface: Option<Iface>,
    pub out_iface: Option<Iface>,
    /// `None` = any protocol.
    pub proto: Option<u8>,
    pub src: Addrs,
    pub sport: Ports,
    pub dst: Addrs,
    pub dport: Ports,
    /// Bit set of ICMP types; `None` = any type.
    pub icmp_types: Option<[u64; 4]>,
}

pub(crate) fn type_bit(types: &[u64; 4], t: u8) -> bool {
    types[usize::from(t >> 6)] & (1u64 << (t & 63)) != 0
}

impl Match {
    pub(crate) fn matches(&self, q: &Query<'_>) -> bool {
        match self.proto {
            None => {}
            Some(p) if p != q.proto => return false,
            // ICMP is IPv4's, ICMPv6 is IPv6's: a bogus "IPv6 carrying protocol 1" is neither.
            Some(1) if !q.dst.is_ipv4() => return false,
            Some(58) if !q.dst.is_ipv6() => return false,
            Some(_) => {}
        }
        if let Some(types) = &self.icmp_types {
            match q.icmp_type {
                Some(t) if type_bit(types, t) => {}
                _ => return false,
            }
        }
        ports_contain(&self.dport, q.dport)
            && ports_contain(&self.sport, q.sport)
            && self.dst.contains(q.dst)
            && self.src.contains(q.src)
            && self.in_iface.as_ref().is_none_or(|i| i.matches(q.in_iface))
            && self
                .out_iface
                .as_ref()
                .is_none_or(|i| i.matches(q.out_iface))
    }

    /// Whether the rule can match any packet at all (source and destination share a family).
    pub(crate) fn satisfiable(&self) -> bool {
        let (s4, s6) = self.src.families();
        let (d4, d6) = self.dst.families();
        let (mut v4, mut v6) = (s4 && d4, s6 && d6);
        match self.proto {
            Some(1) => v6 = false,
            Some(58) => v4 = false,
            _ => {}
        }
        v4 || v6
    }
}

/// `limit N/UNIT [burst B]` as a token bucket kept in one atomic (GCRA): `tat` is the
/// theoretical arrival time of the next event; an event is admitted when `tat` is at most
/// `burst` intervals ahead of now. Admitting moves `tat` one interval on; refusals cost nothing.
#[derive(Debug)]
pub(crate) struct RateLimit {
    interval_ns: u64,
    tolerance_ns: u64,
    tat: AtomicU64,
}

impl RateLimit {
    pub(crate) fn new(count: u32, per_nanos: u64, burst: u32) -> RateLimit {
        let interval_ns = (per_nanos / u64::from(count.max(1))).max(1);
        RateLimit {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(u64::from(burst.max(1))),
            tat: AtomicU64::new(0),
        }
    }

    /// Take one token at `now`; `false` when the rate is exceeded.
    pub(crate) fn admit(&self, now: Timestamp) -> bool {
        let now = now.as_nanos();
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(self.interval_ns);
            if next - now > self.tolerance_ns {
                return false;
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(current) => tat = current,
            }
        }
    }
}

/// A compiled rule.
#[derive(Debug)]
pub(crate) struct Rule {
    pub info: RuleInfo,
    pub m: Match,
    pub limit: Option<RateLimit>,
}

// ---------------------------------------------------------------------------------------------
// Index

/// Rules whose destination port set has at most this many ports are listed under each port.
const PORT_EXPAND_MAX: u32 = 64;

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

#[derive(Debug, Default)]
struct ProtoIndex {
    by_dport: AHashMap<u16, DstIndex>,
    any_port: DstIndex,
}

impl ProtoIndex {
    fn insert(&mut self, id: u32, m: &Match) {
        match &m.dport {
            Some(ranges)
                if ranges
                    .iter()
                    .map(|&(lo, hi)| u32::from(hi) - u32::from(lo) + 1)
                    .sum::<u32>()
                    <= PORT_EXPAND_MAX =>
            {
                for &(lo, hi) in ranges {
                    for p in lo..=hi {
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

#[derive(Debug, Default)]
struct Index {
    by_proto: AHashMap<u8, ProtoIndex>,
    /// Rules for any protocol, used for protocols no rule names.
    other: ProtoIndex,
}

impl Index {
    fn build(rules: &[Rule]) -> Index {
        let mut idx = Index::default();
        for r in rules {
            if let Some(p) = r.m.proto {
                idx.by_proto.entry(p).or_default();
            }
        }
        for (i, r) in rules.iter().enumerate() {
            let Ok(id) = u32::try_from(i) else { break };
            match r.m.proto {
                Some(p) => {
                    if let Some(pi) = idx.by_proto.get_mut(&p) {
                        pi.insert(id, &r.m);
                    }
                }
                None => {
                    idx.other.insert(id, &r.m);
                    for pi in idx.by_proto.values_mut() {
                        pi.insert(id, &r.m);
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

    fn for_each_list(&self, q: &Query<'_>, f: &mut impl FnMut(&[u32])) {
        self.by_proto
            .get(&q.proto)
            .unwrap_or(&self.other)
            .for_each_list(q, f);
    }
}

// ---------------------------------------------------------------------------------------------
// Policy

/// A compiled rule set: what the engine consults for every new connection.
///
/// `Send + Sync`; share it in an `Arc` and swap it whole on reload. The `limit` token buckets
/// live inside, so a reload starts them afresh.
#[derive(Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    index: Index,
    default: RuleAction,
    probes: Option<ProbeMode>,
    source: Option<PathBuf>,
}

impl Policy {
    pub(crate) fn new(
        rules: Vec<Rule>,
        default: RuleAction,
        probes: Option<ProbeMode>,
        source: Option<PathBuf>,
    ) -> Policy {
        let index = Index::build(&rules);
        Policy {
            rules,
            index,
            default,
            probes,
            source,
        }
    }

    /// No rules and `policy allow`: what runs when no rule file is configured.
    pub fn allow_all() -> Policy {
        Policy::new(Vec::new(), RuleAction::Allow, None, None)
    }

    /// Judge the first packet of a new connection: the first rule (in file order) that matches
    /// and whose `limit`, if any, admits it at `now`; else the default policy.
    pub fn evaluate(&self, q: &Query<'_>, now: Timestamp) -> Outcome<'_> {
        let mut floor: u32 = 0;
        loop {
            let mut best = u32::MAX;
            self.index.for_each_list(q, &mut |list: &[u32]| {
                let start = list.partition_point(|&id| id < floor);
                for &id in &list[start..] {
                    if id >= best {
                        break;
                    }
                    if self.rules.get(id as usize).is_some_and(|r| r.m.matches(q)) {
                        best = id;
                        break;
                    }
                }
            });
            let Some(rule) = self.rules.get(best as usize) else {
                return self.default_outcome();
            };
            match &rule.limit {
                Some(l) if !l.admit(now) => floor = best + 1,
                _ => {
                    return Outcome {
                        action: rule.info.action,
                        rule: Some(&rule.info),
                    }
                }
            }
        }
    }

    /// The same verdict as [`Policy::evaluate`], by walking every rule in order. The reference
    /// the index is tested against; also handy to measure what the index saves.
    #[doc(hidden)]
    pub fn evaluate_linear(&self, q: &Query<'_>, now: Timestamp) -> Outcome<'_> {
        for rule in &self.rules {
            if rule.m.matches(q) && rule.limit.as_ref().is_none_or(|l| l.admit(now)) {
                return Outcome {
                    action: rule.info.action,
                    rule: Some(&rule.info),
                };
            }
        }
        self.default_outcome()
    }

    fn default_outcome(&self) -> Outcome<'_> {
        Outcome {
            action: self.default,
            rule: None,
        }
    }

    /// What happens to new connections no rule matches.
    pub fn default_action(&self) -> RuleAction {
        self.default
    }

    /// The `probes` setting, `None` when the file has no `probes` line.
    pub fn probes(&self) -> Option<ProbeMode> {
        self.probes
    }

    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The rules' descriptions, in evaluation order (index = [`RuleInfo::id`]).
    pub fn rules(&self) -> impl Iterator<Item = &RuleInfo> + '_ {
        self.rules.iter().map(|r| &r.info)
    }

    /// The description of rule `id` (see [`RuleInfo::id`]).
    pub fn rule(&self, id: usize) -> Option<&RuleInfo> {
        self.rules.get(id).map(|r| &r.info)
    }

    /// The top-level file the policy was loaded from.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    pub(crate) fn compiled(&self) -> &[Rule] {
        &self.rules
    }

    /// Ids below `below` of every rule that might match `q` (a superset, unsorted, possibly
    /// with repeats), from the index.
    pub(crate) fn candidates(&self, q: &Query<'_>, below: u32, out: &mut Vec<u32>) {
        self.index.for_each_list(q, &mut |list: &[u32]| {
            let end = list.partition_point(|&id| id < below);
            out.extend_from_slice(&list[..end]);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(proto: u8, dst: &str, dport: u16) -> Query<'static> {
        Query {
            src: IpAddr::from([198, 51, 100, 2]),
            dst: dst.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            proto,
            sport: 40000,
            dport,
            icmp_type: None,
            icmp_code: None,
            in_iface: Some("g0"),
            out_iface: Some("g1"),
        }
    }

    fn rule(id: usize, action: RuleAction, m: Match, limit: Option<RateLimit>) -> Rule {
        Rule {
            info: RuleInfo {
                id,
                file: Arc::from("t.rules"),
                line: id as u32 + 1,
                label: None,
                log: false,
                action,
                text: String::new(),
            },
            m,
            limit,
        }
    }

    fn any_match() -> Match {
        Match {
            in_iface: None,
            out_iface: None,
            proto: None,
            src: Addrs::any(),
            sport: None,
            dst: Addrs::any(),
            dport: None,
            icmp_types: None,
        }
    }

    #[test]
    fn actions_and_probe_modes_round_trip() {
        for a in [RuleAction::Allow, RuleAction::Drop, RuleAction::Reject] {
            assert_eq!(a.to_string().parse::<RuleAction>(), Ok(a));
        }
        for m in [ProbeMode::Rst, ProbeMode::Drop] {
            assert_eq!(m.to_string().parse::<ProbeMode>(), Ok(m));
        }
        assert!("RST".parse::<ProbeMode>().is_err());
    }

    #[test]
    fn allow_all_allows() {
        let p = Policy::allow_all();
        let o = p.evaluate(&q(6, "203.0.113.2", 80), Timestamp::ZERO);
        assert_eq!((o.action, o.rule), (RuleAction::Allow, None));
        assert_eq!(p.rule_count(), 0);
        assert_eq!(p.probes(), None);
        assert_eq!(p.source(), None);
    }

    #[test]
    fn rate_limit_bursts_then_refills() {
        let l = RateLimit::new(2, 1_000_000_000, 2);
        let t0 = Timestamp::from_secs(10);
        assert!(l.admit(t0));
        assert!(l.admit(t0));
        assert!(!l.admit(t0));
        assert!(!l.admit(Timestamp::from_millis(10_400)));
        assert!(l.admit(Timestamp::from_millis(10_500)));
        assert!(!l.admit(Timestamp::from_millis(10_500)));
        // After a long pause the bucket is full again, but no fuller than the burst.
        let later = Timestamp::from_secs(100);
        assert!(l.admit(later) && l.admit(later) && !l.admit(later));
    }

    #[test]
    fn interfaces_and_wildcards() {
        let exact = Iface {
            name: "g0".into(),
            wildcard: false,
        };
        let wild = Iface {
            name: "ppp".into(),
            wildcard: true,
        };
        assert!(exact.matches(Some("g0")) && !exact.matches(Some("g01")) && !exact.matches(None));
        assert!(
            wild.matches(Some("ppp0")) && wild.matches(Some("ppp")) && !wild.matches(Some("pp0"))
        );
    }

    #[test]
    fn limited_rule_falls_through_to_next() {
        let mut m = any_match();
        m.proto = Some(6);
        m.dport = Some(vec![(80, 80)]);
        let rules = vec![
            rule(
                0,
                RuleAction::Allow,
                m.clone(),
                Some(RateLimit::new(1, 1_000_000_000, 1)),
            ),
            rule(1, RuleAction::Reject, m, None),
        ];
        let p = Policy::new(rules, RuleAction::Drop, None, None);
        let now = Timestamp::from_secs(1);
        let query = q(6, "203.0.113.2", 80);
        assert_eq!(p.evaluate(&query, now).action, RuleAction::Allow);
        assert_eq!(p.evaluate(&query, now).action, RuleAction::Reject);
        assert_eq!(
            p.evaluate(&q(6, "203.0.113.2", 81), now).action,
            RuleAction::Drop
        );
    }

    #[test]
    fn index_picks_lowest_id_across_lists() {
        let mut wide = any_match();
        wide.dst = Addrs {
            any: false,
            v4: vec!["203.0.113.0/24".parse().unwrap_or_default()],
            v6: vec![],
        };
        let mut narrow = any_match();
        narrow.proto = Some(6);
        narrow.dport = Some(vec![(443, 443)]);
        narrow.dst = Addrs {
            any: false,
            v4: vec!["203.0.113.2/32".parse().unwrap_or_default()],
            v6: vec![],
        };
        let p = Policy::new(
            vec![
                rule(0, RuleAction::Drop, wide, None),
                rule(1, RuleAction::Allow, narrow, None),
            ],
            RuleAction::Reject,
            None,
            None,
        );
        let o = p.evaluate(&q(6, "203.0.113.2", 443), Timestamp::ZERO);
        assert_eq!(o.rule.map(|r| r.id), Some(0));
        let o = p.evaluate(&q(6, "2001:db8::1", 443), Timestamp::ZERO);
        assert_eq!(o.action, RuleAction::Reject);
    }

    #[test]
    fn unsatisfiable_rules_never_match() {
        let mut m = any_match();
        m.src = Addrs {
            any: false,
            v4: vec!["198.51.100.0/24".parse().unwrap_or_default()],
            v6: vec![],
        };
        m.dst = Addrs {
            any: false,
            v4: vec![],
            v6: vec!["2001:db8::/32".parse().unwrap_or_default()],
        };
        assert!(!m.satisfiable());
        let mut icmp6_v4 = any_match();
        icmp6_v4.proto = Some(58);
        icmp6_v4.dst = Addrs {
            any: false,
            v4: vec!["203.0.113.2/32".parse().unwrap_or_default()],
            v6: vec![],
        };
        assert!(!icmp6_v4.satisfiable());
        assert!(any_match().satisfiable());
    }

    #[test]
    fn large_address_sets_are_searched_correctly() {
        let mut set = Addrs::default();
        // Overlapping, unsorted, adjacent networks of mixed sizes.
        for i in (0u32..200).rev() {
            let len = 24 + (i % 9) as u8;
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 + i * 300);
            set.v4.push(
                Ipv4Net::new(addr, len)
                    .map(|n| n.trunc())
                    .unwrap_or_default(),
            );
        }
        set.v4.push("10.0.0.0/20".parse().unwrap_or_default());
        set.v6.push("2001:db8::/48".parse().unwrap_or_default());
        set.v6.push("2001:db8:0:1::/64".parse().unwrap_or_default());
        let raw = set.clone();
        set.normalize();
        for host in (0u32..70_000).step_by(7) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + host));
            let linear = raw
                .v4
                .iter()
                .any(|n| n.contains(&std::net::Ipv4Addr::from(0x0a00_0000 + host)));
            assert_eq!(set.contains(ip), linear, "{ip}");
        }
        assert!(set.contains("2001:db8::1:2:3".parse().unwrap_or(IpAddr::from([0; 4]))));
        assert!(!set.contains("2001:db8:1::1".parse().unwrap_or(IpAddr::from([0; 4]))));
    }

    #[test]
    fn ports_normalize() {
        assert_eq!(
            normalize_ports(vec![(443, 443), (80, 80), (81, 90), (85, 100)]),
            vec![(80, 100), (443, 443)]
        );
        assert_eq!(
            normalize_ports(vec![(65535, 65535), (0, 65534)]),
            vec![(0, 65535)]
        );
    }
}
