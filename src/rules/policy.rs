//! The compiled policy: rules (matcher, description, rate limit) in file order, and
//! first-match evaluation through the [index](super::index).
//!
//! `limit` is checked only for the rule that would otherwise be the first match; when its rate is
//! exceeded the search continues after it, exactly like a linear walk.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::index::Index;
use super::matcher::{Match, Query};
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
    /// Hits per rule (index = [`RuleInfo::id`]), then one for the default policy.
    hits: Vec<AtomicU64>,
}

impl Policy {
    pub(crate) fn new(
        rules: Vec<Rule>,
        default: RuleAction,
        probes: Option<ProbeMode>,
        source: Option<PathBuf>,
    ) -> Policy {
        let index = Index::build(rules.iter().map(|r| &r.m));
        let hits = (0..=rules.len()).map(|_| AtomicU64::new(0)).collect();
        Policy {
            rules,
            index,
            default,
            probes,
            source,
            hits,
        }
    }

    /// Counts a hit of the outcome's rule (or of the default policy): the engine calls it
    /// once for each connection or stateless packet the rules decided. Recheck evaluations
    /// are not hits.
    pub fn count_hit(&self, outcome: &Outcome<'_>) {
        let i = outcome.rule.map_or(self.rules.len(), |r| r.id);
        if let Some(h) = self.hits.get(i) {
            h.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hits of rule `id` since this rule set was loaded.
    pub fn hits(&self, id: usize) -> u64 {
        self.hits.get(id).map_or(0, |h| h.load(Ordering::Relaxed))
    }

    /// Decisions of the default policy (no rule matched) since this rule set was loaded.
    pub fn default_hits(&self) -> u64 {
        self.hits(self.rules.len())
    }

    /// No rules and `policy allow`: what runs when no rule file is configured.
    pub fn allow_all() -> Policy {
        Policy::new(Vec::new(), RuleAction::Allow, None, None)
    }

    /// Judge the first packet of a new connection: the first rule (in file order) that matches
    /// and whose `limit`, if any, admits it at `now`; else the default policy.
    pub fn evaluate(&self, q: &Query<'_>, now: Timestamp) -> Outcome<'_> {
        self.first_match(q, |l| l.admit(now))
    }

    /// Judge a connection already tracked, as a recheck on reload does: the first rule that
    /// matches, its `limit` ignored and untouched (`limit` paces new connections; one that
    /// is open was within it, and a recheck must not spend the tokens new ones need).
    pub fn evaluate_tracked(&self, q: &Query<'_>) -> Outcome<'_> {
        self.first_match(q, |_| true)
    }

    /// The first rule that matches `q` and whose `limit`, if any, `admit` lets through; else
    /// the default policy.
    fn first_match(&self, q: &Query<'_>, admit: impl Fn(&RateLimit) -> bool) -> Outcome<'_> {
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
                Some(l) if !admit(l) => floor = best + 1,
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
    use crate::proto::PortRange;
    use crate::rules::matcher::Addrs;
    use std::net::IpAddr;

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
    fn limited_rule_falls_through_to_next() {
        let mut m = Match::any();
        m.proto = Some(6);
        m.dport = Some(vec![PortRange::single(80)]);
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
        let mut wide = Match::any();
        wide.dst = Addrs {
            any: false,
            v4: vec!["203.0.113.0/24".parse().unwrap_or_default()],
            v6: vec![],
        };
        let mut narrow = Match::any();
        narrow.proto = Some(6);
        narrow.dport = Some(vec![PortRange::single(443)]);
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
}
