//! What the detector keeps per source: one record per probed (host, protocol, port,
//! technique) with its state, tallies of the counted records per host and per port, the alert
//! marks of the current window, and the shards that hold the sources.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::input::{ProbeKind, Shape, Technique};
use super::proof::Proof;
use crate::proto;
use crate::time::Timestamp;
use crate::verdict::Flow;

/// One probed (host, protocol, port, technique) of one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Key {
    /// The probed host.
    pub(super) dst: IpAddr,
    /// IP protocol of the probes.
    pub(super) proto: u8,
    /// The probed port.
    pub(super) port: u16,
    /// The technique of the probes.
    pub(super) tech: Technique,
}

impl Key {
    /// The record a reply or a completed handshake of `flow` resolves: the UDP flow, or the
    /// SYN of a TCP connection.
    pub(super) fn answered(flow: &Flow) -> Key {
        let tech = if flow.proto == proto::UDP {
            Technique::Udp
        } else {
            Technique::Syn
        };
        Key {
            dst: flow.dst,
            proto: flow.proto,
            port: flow.dport,
            tech,
        }
    }
}

/// How a counted record was resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Counted at once; no answer seen (yet).
    Probe,
    /// RST or ICMP unreachable.
    Rejected,
    /// No answer within `answer_timeout`.
    Unanswered,
    /// SYN/ACK, then no completed handshake.
    HalfOpen,
}

/// Where a record stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RecState {
    /// An allowed SYN / UDP flow waiting for its outcome.
    Candidate {
        /// When it was first seen.
        since: Timestamp,
    },
    /// The target answered SYN/ACK; waiting for the handshake to complete.
    Replied {
        /// When the SYN/ACK was seen.
        since: Timestamp,
    },
    /// A probe.
    Counted(Outcome),
}

/// One probed (host, protocol, port, technique) of one source.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rec {
    /// When the last probe was seen.
    pub(super) last: Timestamp,
    /// Probes seen, retries included.
    pub(super) probes: u32,
    /// Shapes seen ([`ProbeKind::bit`]).
    pub(super) kinds: u16,
    /// Where it stands.
    pub(super) state: RecState,
}

/// Counts of counted records of one technique.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counts {
    /// Counted records.
    pub(super) n: u32,
    /// Of which refused (RST, ICMP unreachable).
    pub(super) rejects: u32,
    /// Of which answered at all (refused or half-open).
    pub(super) answered: u32,
}

/// Per-technique counts for one host or one port (usually one technique).
#[derive(Clone, Debug, Default)]
pub(super) struct Tally(pub(super) Vec<(Technique, Counts)>);

impl Tally {
    /// The counts of `tech` (zero when none).
    pub(super) fn get(&self, tech: Technique) -> Counts {
        self.0
            .iter()
            .find(|(t, _)| *t == tech)
            .map(|(_, c)| *c)
            .unwrap_or_default()
    }

    /// Adds (or removes) one record of `tech` resolved as `outcome`.
    fn apply(&mut self, tech: Technique, outcome: Outcome, add: bool) {
        let idx = match self.0.iter().position(|(t, _)| *t == tech) {
            Some(i) => i,
            None => {
                self.0.push((tech, Counts::default()));
                self.0.len() - 1
            }
        };
        let c = &mut self.0[idx].1;
        let step = |x: &mut u32| {
            *x = if add {
                x.saturating_add(1)
            } else {
                x.saturating_sub(1)
            }
        };
        step(&mut c.n);
        if outcome == Outcome::Rejected {
            step(&mut c.rejects);
        }
        if matches!(outcome, Outcome::Rejected | Outcome::HalfOpen) {
            step(&mut c.answered);
        }
        self.0.retain(|(_, c)| c.n > 0);
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The counted records of one source, per target host and per target port.
#[derive(Debug, Default)]
pub(super) struct Tallies {
    /// Per probed host (port scans).
    pub(super) by_dst: HashMap<IpAddr, Tally>,
    /// Per probed protocol and port (port sweeps).
    pub(super) by_port: HashMap<(u8, u16), Tally>,
}

impl Tallies {
    /// Adds (or removes) the record `key` resolved as `outcome`.
    fn apply(&mut self, key: &Key, outcome: Outcome, add: bool) {
        let by_dst = self.by_dst.entry(key.dst).or_default();
        by_dst.apply(key.tech, outcome, add);
        if by_dst.is_empty() {
            self.by_dst.remove(&key.dst);
        }
        let by_port = self.by_port.entry((key.proto, key.port)).or_default();
        by_port.apply(key.tech, outcome, add);
        if by_port.is_empty() {
            self.by_port.remove(&(key.proto, key.port));
        }
    }

    /// Moves a record from `old` to `new`, keeping the tallies in step.
    pub(super) fn transition(&mut self, key: &Key, old: RecState, new: RecState) {
        if let RecState::Counted(o) = old {
            self.apply(key, o, false);
        }
        if let RecState::Counted(o) = new {
            self.apply(key, o, true);
        }
    }
}

/// An alert already sent in the current window.
#[derive(Clone, Copy, Debug)]
pub(super) struct Mark {
    /// The highest level alerted.
    pub(super) level: u8,
    /// When the first alert of the window was sent.
    pub(super) at: Timestamp,
}

/// Everything kept about one (possible) scanner.
#[derive(Debug)]
pub(super) struct Source {
    /// Its records.
    pub(super) records: HashMap<Key, Rec>,
    /// Records per technique (the per-source cap applies to each technique on its own, so a
    /// scanner that ran one big scan is still seen when it switches technique).
    pub(super) per_tech: HashMap<Technique, usize>,
    /// Tallies of its counted records.
    pub(super) tallies: Tallies,
    /// Alerts sent in the current window, per scan shape and technique.
    pub(super) marks: HashMap<(Shape, Technique), Mark>,
    /// When it was last seen probing.
    pub(super) last_seen: Timestamp,
    /// The address it last probed from (one of its source's: an IPv6 /64 has many).
    pub(super) addr: IpAddr,
    /// Earliest time the timer has something to do for this source.
    pub(super) next_due: Timestamp,
    /// Completed handshakes: what may block it.
    pub(super) proof: Proof,
}

impl Source {
    /// A source first seen at `now`.
    pub(super) fn new(now: Timestamp) -> Source {
        Source {
            records: HashMap::new(),
            per_tech: HashMap::new(),
            tallies: Tallies::default(),
            marks: HashMap::new(),
            last_seen: now,
            addr: IpAddr::from([0u8; 4]),
            next_due: now,
            proof: Proof::default(),
        }
    }

    /// Sets the state of an existing record.
    pub(super) fn set_state(&mut self, key: &Key, new: RecState) {
        if let Some(rec) = self.records.get_mut(key) {
            self.tallies.transition(key, rec.state, new);
            rec.state = new;
        }
    }

    /// Removes a record (and its share of the tallies); true when there was one.
    pub(super) fn remove(&mut self, key: &Key) -> bool {
        match self.records.remove(key) {
            Some(rec) => {
                if let Some(n) = self.per_tech.get_mut(&key.tech) {
                    *n = n.saturating_sub(1);
                }
                if let RecState::Counted(outcome) = rec.state {
                    self.tallies.apply(key, outcome, false);
                }
                true
            }
            None => false,
        }
    }

    /// Ages the records at `now`: forgets those idle for longer than `window`, resolves
    /// candidates and replied SYNs left without answer for `answer_timeout` (filtered and
    /// half-open probes), ends the alert marks of past windows and sets `next_due`. Returns
    /// the records it resolved (to evaluate) and the number it forgot.
    pub(super) fn age(
        &mut self,
        now: Timestamp,
        window: Duration,
        answer_timeout: Duration,
    ) -> (Vec<Key>, usize) {
        let timed_out = |since: Timestamp| now.since(since) >= answer_timeout;
        let mut changed = Vec::new();
        let mut expired = Vec::new();
        let mut next_due = now.saturating_add(window);
        for (key, rec) in &self.records {
            let new = match rec.state {
                RecState::Candidate { since } if timed_out(since) => {
                    Some(RecState::Counted(Outcome::Unanswered))
                }
                RecState::Replied { since } if timed_out(since) => {
                    Some(RecState::Counted(Outcome::HalfOpen))
                }
                RecState::Counted(Outcome::Probe) if timed_out(rec.last) => {
                    Some(RecState::Counted(Outcome::Unanswered))
                }
                _ => None,
            };
            if now.since(rec.last) > window {
                expired.push(*key);
                continue;
            }
            next_due = next_due.min(
                rec.last
                    .saturating_add(window)
                    .saturating_add(Duration::from_nanos(1)),
            );
            match (new, rec.state) {
                (Some(new), _) => changed.push((*key, new)),
                (None, RecState::Candidate { since } | RecState::Replied { since }) => {
                    next_due = next_due.min(since.saturating_add(answer_timeout));
                }
                (None, RecState::Counted(Outcome::Probe)) => {
                    next_due = next_due.min(rec.last.saturating_add(answer_timeout));
                }
                _ => {}
            }
        }
        for key in &expired {
            self.remove(key);
        }
        self.marks.retain(|_, m| now.since(m.at) < window);
        for m in self.marks.values() {
            next_due = next_due.min(m.at.saturating_add(window));
        }
        for (key, new) in &changed {
            self.set_state(key, *new);
        }
        self.next_due = next_due;
        (
            changed.into_iter().map(|(key, _)| key).collect(),
            expired.len(),
        )
    }

    /// What the counted records of `key`'s host (`Shape::Scan`) or port (`Shape::Sweep`)
    /// add up to, for `key`'s protocol and technique.
    pub(super) fn summary(&self, key: &Key, shape: Shape) -> Summary {
        let mut targets = Vec::new();
        let mut ports = Vec::new();
        let (mut probes, mut rejects, mut kinds) = (0u64, 0u32, 0u16);
        for (k, rec) in &self.records {
            let same = match shape {
                Shape::Scan => k.dst == key.dst,
                Shape::Sweep => k.port == key.port,
            };
            let RecState::Counted(outcome) = rec.state else {
                continue;
            };
            if !same || k.tech != key.tech || k.proto != key.proto {
                continue;
            }
            targets.push(k.dst);
            ports.push(k.port);
            probes += u64::from(rec.probes);
            rejects += u32::from(outcome == Outcome::Rejected);
            kinds |= rec.kinds;
        }
        targets.sort_unstable();
        targets.dedup();
        ports.sort_unstable();
        ports.dedup();
        Summary {
            targets,
            ports: (
                ports.first().copied().unwrap_or(key.port),
                ports.last().copied().unwrap_or(key.port),
            ),
            nports: ports.len(),
            probes,
            rejects,
            kinds: ProbeKind::ALL
                .into_iter()
                .filter(|k| kinds & k.bit() != 0)
                .collect(),
        }
    }
}

/// What the counted records of one host or one port add up to (see [`Source::summary`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Summary {
    /// Probed hosts, sorted.
    pub(super) targets: Vec<IpAddr>,
    /// Lowest and highest probed port.
    pub(super) ports: (u16, u16),
    /// Distinct probed ports.
    pub(super) nports: usize,
    /// Probes seen, retries included.
    pub(super) probes: u64,
    /// Records refused.
    pub(super) rejects: u32,
    /// Shapes seen.
    pub(super) kinds: Vec<ProbeKind>,
}

/// The sources whose addresses hash to one shard, and their number of records.
#[derive(Debug, Default)]
pub(super) struct Shard {
    /// Per source address.
    pub(super) sources: HashMap<IpAddr, Source>,
    /// Records of all its sources.
    pub(super) records: usize,
}

impl Shard {
    /// Forgets a record that turned out to be a normal connection or exchange.
    pub(super) fn forget(&mut self, src: IpAddr, key: &Key) {
        if let Some(source) = self.sources.get_mut(&src) {
            if source.remove(key) {
                self.records -= 1;
            }
        }
    }

    /// Makes room for `src` and one more record by forgetting the least recently seen eighth
    /// of the other sources.
    pub(super) fn make_room(&mut self, src: IpAddr, max_sources: usize, max_records: usize) {
        let need_source = !self.sources.contains_key(&src) && self.sources.len() >= max_sources;
        if !need_source && self.records < max_records {
            return;
        }
        let mut ages: Vec<Timestamp> = self
            .sources
            .iter()
            .filter(|(ip, _)| **ip != src)
            .map(|(_, s)| s.last_seen)
            .collect();
        if ages.is_empty() {
            return;
        }
        let nth = (ages.len() / 8).min(ages.len() - 1);
        let (_, cutoff, _) = ages.select_nth_unstable(nth);
        let cutoff = *cutoff;
        // Sources holding proof (completed handshakes, what blocks) go last: a spray of forged
        // sources must not wipe a real scanner's record.
        for spare_proof in [true, false] {
            let mut freed = 0;
            let before = self.sources.len();
            self.sources.retain(|ip, s| {
                let keep =
                    *ip == src || s.last_seen > cutoff || (spare_proof && !s.proof.is_empty());
                if !keep {
                    freed += s.records.len();
                }
                keep
            });
            self.records -= freed;
            if self.sources.len() < before {
                return;
            }
        }
    }
}
