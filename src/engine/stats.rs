//! The engine's counters, and [`Stats`], their snapshot: defined once here and serialised as
//! they are (the control protocol's `stats` carries this very struct), so a counter cannot be
//! forgotten on the way to a client.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::Engine;
use crate::verdict::{DropReason, Pass, Verdict};

/// The atomics behind [`Stats`] that the engine bumps itself (the table's totals come from
/// the table).
#[derive(Debug)]
pub(super) struct Counters {
    packets: AtomicU64,
    accepted: AtomicU64,
    ignored: AtomicU64,
    new_connections: AtomicU64,
    related: AtomicU64,
    fragments: AtomicU64,
    answered: AtomicU64,
    answers_limited: AtomicU64,
    logs_suppressed: AtomicU64,
    adopted: AtomicU64,
    /// Per [`DropReason`], in [`DropReason::ALL`] order.
    drops: Vec<AtomicU64>,
}

impl Default for Counters {
    fn default() -> Self {
        let zero = || AtomicU64::new(0);
        Counters {
            packets: zero(),
            accepted: zero(),
            ignored: zero(),
            new_connections: zero(),
            related: zero(),
            fragments: zero(),
            answered: zero(),
            answers_limited: zero(),
            logs_suppressed: zero(),
            adopted: zero(),
            drops: DropReason::ALL.iter().map(|_| zero()).collect(),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// Counts one packet's verdict: every counter a verdict moves, in one place.
    #[inline]
    pub(super) fn count(&self, verdict: Verdict) {
        bump(&self.packets);
        match verdict {
            Verdict::Drop(r) => {
                if let Some(c) = self.drops.get(r as usize) {
                    bump(c);
                }
                tracing::trace!(reason = r.name(), "drop");
            }
            Verdict::Accept(pass) => {
                bump(&self.accepted);
                match pass {
                    Pass::Tracked | Pass::Stateless => {}
                    Pass::Opened => bump(&self.new_connections),
                    Pass::Ignored => bump(&self.ignored),
                    Pass::Related => bump(&self.related),
                    Pass::Fragment => bump(&self.fragments),
                }
            }
        }
    }

    /// Counts an answer asked for (`true`) or suppressed by the rate limits.
    pub(super) fn answer(&self, taken: bool) {
        bump(if taken {
            &self.answered
        } else {
            &self.answers_limited
        });
    }

    /// Counts a rule `log` line suppressed by its rate limit.
    pub(super) fn logs_suppressed(&self) {
        bump(&self.logs_suppressed);
    }

    /// Counts a flow adopted from the kernel table.
    pub(super) fn adopted(&self) {
        bump(&self.adopted);
    }

    fn drops(&self, reason: DropReason) -> u64 {
        self.drops
            .get(reason as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// A snapshot of the counters. The control protocol sends it as it is (the JSON keys are the
/// field names; missing ones read as 0, for clients of older daemons).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Packets processed.
    pub packets: u64,
    /// Packets accepted.
    pub accepted: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// Accepted without learning (retransmits, late ACKs).
    pub ignored: u64,
    /// Connections opened.
    pub new_connections: u64,
    /// ICMP errors accepted as related to a flow.
    pub related: u64,
    /// Non-first fragments passed.
    pub fragments: u64,
    /// Entries expired.
    pub expired: u64,
    /// Entries evicted because the table was full.
    pub early_drops: u64,
    /// Handshakes evicted from a full table that completed and came back into it.
    pub resumed: u64,
    /// Entries in the tables.
    pub entries: u64,
    /// RSTs and ICMP unreachables asked for (probe and reject answers).
    pub answered: u64,
    /// Answers suppressed by the `[probes]` rate limits (the packet was dropped silently).
    pub answers_limited: u64,
    /// Rule `log` lines suppressed by their rate limit.
    pub logs_suppressed: u64,
    /// Flows adopted from the kernel's conntrack table (restart, standby).
    pub adopted: u64,
    /// Drops per reason name, in counter order (reasons with a zero count omitted); a JSON
    /// object on the wire.
    #[serde(with = "as_map")]
    pub drops: Vec<(String, u64)>,
}

impl Stats {
    /// Every scalar counter with its name, in display order (`statewall stats`).
    pub fn rows(&self) -> [(&'static str, u64); 15] {
        [
            ("packets", self.packets),
            ("accepted", self.accepted),
            ("dropped", self.dropped),
            ("ignored", self.ignored),
            ("new_connections", self.new_connections),
            ("related", self.related),
            ("fragments", self.fragments),
            ("expired", self.expired),
            ("early_drops", self.early_drops),
            ("resumed", self.resumed),
            ("entries", self.entries),
            ("answered", self.answered),
            ("answers_limited", self.answers_limited),
            ("logs_suppressed", self.logs_suppressed),
            ("adopted", self.adopted),
        ]
    }
}

/// `Vec<(name, count)>` as a JSON object, keeping the order it has.
mod as_map {
    use serde::de::{Deserializer, MapAccess, Visitor};
    use serde::ser::{SerializeMap, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(v: &[(String, u64)], s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(v.len()))?;
        for (k, n) in v {
            map.serialize_entry(k, n)?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, u64)>, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = Vec<(String, u64)>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of drop reasons to counts")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(pair) = m.next_entry()? {
                    out.push(pair);
                }
                Ok(out)
            }
        }
        d.deserialize_map(Pairs)
    }
}

impl Engine {
    /// Counter snapshot.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let drops: Vec<(String, u64)> = DropReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), c.drops(*r)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let table = self.conntrack.totals();
        Stats {
            packets: load(&c.packets),
            accepted: load(&c.accepted),
            dropped: drops.iter().map(|(_, n)| n).sum(),
            ignored: load(&c.ignored),
            new_connections: load(&c.new_connections),
            related: load(&c.related),
            fragments: load(&c.fragments),
            expired: table.expired,
            early_drops: table.early_drops,
            resumed: table.resumed,
            entries: table.entries,
            answered: load(&c.answered),
            answers_limited: load(&c.answers_limited),
            logs_suppressed: load(&c.logs_suppressed),
            adopted: load(&c.adopted),
            drops,
        }
    }

    /// Drops counted for one reason.
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.counters.drops(reason)
    }
}
