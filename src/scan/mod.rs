//! Scan detection: per-source sliding windows over probes and negative answers.
//!
//! The engine reports what it sees, one [`ScanInput`] at a time, through
//! [`ScanDetector::on_input`], and calls [`ScanDetector::on_timer`] about every 250 ms for what
//! needs time to pass. The detector keeps, per scanning address, one record per probed
//! `(target, protocol, port, technique)` and tallies of the records that count, per target host
//! (port scans) and per target port (port sweeps). Crossing a threshold yields a [`ScanAlert`];
//! growing to 3×, 10× and 30× the threshold yields one more each (levels 1..4, as psad does).
//! One alert per (scanner, scan type, technique) and level per window.
//!
//! # What counts
//! - Stealth shapes (NULL, FIN, XMAS, Maimon, bare ACK, SYN+FIN, stray SYN/ACK, OS-fingerprint
//!   shapes: [`ProbeKind::from_tcp_flags`]) and SYNs or UDP datagrams dropped by policy
//!   ([`ScanInput::Probe`]) count at once.
//! - An allowed SYN or a new UDP flow is only a *candidate*: it counts when it resolves as a
//!   probe: refused (RST or ICMP unreachable: [`ScanInput::Answer`]), unanswered after
//!   `answer_timeout` (the "filtered" variants, resolved by [`ScanDetector::on_timer`]), or
//!   answered with SYN/ACK ([`ScanInput::Reply`]) but closed ([`ScanInput::Closed`]) or timed
//!   out without completing (half-open, `-sS`). A connection that completes
//!   ([`ScanInput::Established`]) or a UDP flow that gets a reply ([`ScanInput::Reply`]) is
//!   normal life, not a probe. So a browser opening 30 connections to 30 CDNs on port 443 at
//!   once raises nothing.
//! - Retries to the same port are one record. Late FIN/ACK/RST-ish segments of connections that
//!   closed recently are ignored through short-lived tombstones (left by
//!   [`ScanInput::Closed`], for every connection that ends, expired ones included; after a
//!   restart, pickup adopts the connections statewall forgot). The source port proves nothing:
//!   `nmap -g 80` sends its probes from port 80.
//! - Only the prober side is counted: answers (the target's or statewall's own RSTs and ICMP
//!   unreachables) are attributed to the prober, never to the answering host.
//!
//! # What blocks
//! Everything above can be sent from a forged address, so it is reported and never blocked on.
//! With `block = true`, a source is blocked only on proof that it is where its packets say:
//! TCP handshakes it completed, to enough ports of one host for a port scan alert of
//! `block_level` (`proof`). A block covers the source (`[sources]`), or its group.
//!
//! # Memory
//! Records of normal connections are forgotten as soon as they complete, so busy clients cost
//! nothing beyond their connections in flight. At most `max_sources` scanners and
//! `max_records` records (about 200 bytes each with their share of the tallies: the default
//! 131072 records stay under ~30 MB). Per scanner and technique, records stop being added once
//! there are enough to reach level 4. When full, the least recently seen eighth of the sources
//! is forgotten. At most `max_tombstones` closed connections are remembered.
//!
//! # Known look-alikes
//! UDP traceroute sends to consecutive ports of one host with no answer from it; the engine
//! should report the ICMP time-exceeded errors it relays for such a flow as
//! [`ScanInput::Reply`], or the ports can be listed in `allow_ports`.
//!
//! # Layout
//! `input` (what the engine reports), `record` (records, tallies, shards), `tombstone`
//! (recently closed connections), `alert` (what the detector reports), `config` (the `[scan]`
//! section and what a detector derives from it), and here the detector itself.

mod alert;
mod config;
mod input;
mod proof;
mod record;
mod tombstone;

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use self::alert::{AlertAction, ScanAlert, ScanType};
pub use self::config::{BlockScope, ScanConfig, ScanConfigError, Sensitivity, Thresholds};
pub use self::input::{AnswerKind, ProbeKind, ScanInput, Technique};

use self::alert::MAX_LISTED_TARGETS;
use self::config::Settings;
use self::input::Shape;
use self::record::{Counts, Key, Mark, Outcome, Rec, RecState, Shard, Source, Summary};
use self::tombstone::{Tombstones, Tuple};
use crate::proto;
use crate::ratelimit::source_group;
use crate::time::Timestamp;
use crate::verdict::{Flow, ProbeMode};

/// The scan detector. `Sync`; every method takes `&self` and the current time.
#[derive(Debug)]
pub struct ScanDetector {
    s: Settings,
    shards: Box<[Mutex<Shard>]>,
    tombstones: Mutex<Tombstones>,
    hasher: ahash::RandomState,
}

/// Sources below this many get one shard (exact caps); above, 16 shards.
const SHARDING_FROM: usize = 1024;
/// Shards of a detector for many sources.
const SHARDS: usize = 16;

/// Locks `m`, also after a panic elsewhere (the state stays consistent between statements).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ScanDetector {
    /// A detector for `cfg` (validate it first); `respond` is the `[probes]` answer mode, shown
    /// as the action of alerts that do not block.
    pub fn new(cfg: ScanConfig, respond: ProbeMode) -> ScanDetector {
        let nshards = if cfg.max_sources >= SHARDING_FROM {
            SHARDS
        } else {
            1
        };
        ScanDetector {
            s: Settings::new(cfg, respond, nshards),
            shards: (0..nshards).map(|_| Mutex::new(Shard::default())).collect(),
            tombstones: Mutex::new(Tombstones::default()),
            hasher: ahash::RandomState::new(),
        }
    }

    /// One line for the daemon to print at startup.
    pub fn describe(&self) -> String {
        self.s.describe()
    }

    /// The one entry for what the engine saw: a probe, an answer to one, a reply, a completed
    /// handshake or a closed connection. Returns the alerts it triggers (usually none: an empty
    /// `Vec` does not allocate).
    pub fn on_input(&self, now: Timestamp, input: ScanInput) -> Vec<ScanAlert> {
        match input {
            ScanInput::Probe { flow, kind } => self.probe(now, &flow, kind),
            ScanInput::Answer { probe, kind } => self.answer(now, &probe, kind),
            ScanInput::Reply { flow } => {
                self.reply(now, &flow);
                Vec::new()
            }
            ScanInput::Established { flow } => self.established(now, &flow),
            ScanInput::Closed { flow } => self.closed(now, &flow),
        }
    }

    /// Time-driven work, to call every ~250 ms: resolves candidates without answer (filtered
    /// and half-open probes), slides the windows, forgets idle sources and old tombstones.
    pub fn on_timer(&self, now: Timestamp) -> Vec<ScanAlert> {
        lock(&self.tombstones).prune(now);
        let (window, answer_timeout) = (self.s.t.window, self.s.t.answer_timeout);
        let mut alerts = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            let shard = &mut *shard;
            let mut removed = 0;
            shard.sources.retain(|&src, source| {
                if source.next_due <= now {
                    let (resolved, expired) = source.age(now, window, answer_timeout);
                    for key in &resolved {
                        alerts.extend(self.evaluate(src, source, key, now));
                    }
                    removed += expired;
                }
                source.proof.slide(now, window);
                !(source.records.is_empty() && source.marks.is_empty() && source.proof.is_empty())
            });
            shard.records -= removed;
        }
        alerts
    }

    /// Number of sources currently tracked.
    pub fn tracked_sources(&self) -> usize {
        self.shards.iter().map(|s| lock(s).sources.len()).sum()
    }

    /// Number of probe records currently kept.
    pub fn tracked_records(&self) -> usize {
        self.shards.iter().map(|s| lock(s).records).sum()
    }

    /// The shard that holds `src`.
    fn shard(&self, src: IpAddr) -> MutexGuard<'_, Shard> {
        let idx = (self.hasher.hash_one(src) as usize) % self.shards.len();
        lock(&self.shards[idx])
    }

    /// [`ScanInput::Probe`]: records a packet that may be a probe.
    fn probe(&self, now: Timestamp, flow: &Flow, kind: ProbeKind) -> Vec<ScanAlert> {
        if !self.s.counts(flow.src, flow.dst, flow.dport) {
            return Vec::new();
        }
        if kind.is_late_segment() && lock(&self.tombstones).contains(&Tuple::of(flow), now) {
            // A late segment of a connection that closed recently: not a probe.
            return Vec::new();
        }
        let key = Key {
            dst: flow.dst,
            proto: flow.proto,
            port: flow.dport,
            tech: kind.technique(),
        };
        let src = self.s.source(flow.src);
        let mut shard = self.shard(src);
        let shard = &mut *shard;
        let is_new = !shard
            .sources
            .get(&src)
            .is_some_and(|s| s.records.contains_key(&key));
        if is_new {
            shard.make_room(src, self.s.max_sources, self.s.max_records);
            if shard.records >= self.s.max_records {
                return Vec::new();
            }
        }
        let source = shard.sources.entry(src).or_insert_with(|| Source::new(now));
        source.last_seen = now;
        source.addr = flow.src;
        if is_new {
            let n = source.per_tech.entry(key.tech).or_default();
            if *n >= self.s.max_records_per_source {
                return Vec::new();
            }
            *n += 1;
        }
        let rec = source.records.entry(key).or_insert(Rec {
            last: now,
            probes: 0,
            kinds: 0,
            state: RecState::Candidate { since: now },
        });
        rec.last = now;
        rec.probes = rec.probes.saturating_add(1);
        rec.kinds |= kind.bit();
        if !is_new {
            // A retry, or another packet to a port already known: nothing new to count.
            return Vec::new();
        }
        shard.records += 1;
        let deadline = if kind.is_candidate() {
            now.saturating_add(self.s.t.answer_timeout)
        } else {
            source.set_state(&key, RecState::Counted(Outcome::Probe));
            now.saturating_add(self.s.t.answer_timeout.min(self.s.t.window))
        };
        source.next_due = source.next_due.min(deadline);
        self.evaluate(src, source, &key, now)
    }

    /// [`ScanInput::Answer`]: a negative answer resolves the prober's records of that port.
    fn answer(&self, now: Timestamp, probe: &Flow, kind: AnswerKind) -> Vec<ScanAlert> {
        let (scanner, target, proto, port) = (probe.src, probe.dst, probe.proto, probe.dport);
        if !self.s.counts(scanner, target, port) {
            return Vec::new();
        }
        let scanner = self.s.source(scanner);
        let techniques = match kind {
            AnswerKind::TcpRst => Technique::answered_by(proto::TCP),
            AnswerKind::IcmpUnreachable => Technique::answered_by(proto),
        };
        let mut shard = self.shard(scanner);
        let Some(source) = shard.sources.get_mut(&scanner) else {
            return Vec::new();
        };
        let mut alerts = Vec::new();
        for &tech in techniques {
            let key = Key {
                dst: target,
                proto,
                port,
                tech,
            };
            let Some(rec) = source.records.get(&key) else {
                continue;
            };
            let resolvable = matches!(
                rec.state,
                RecState::Candidate { .. }
                    | RecState::Counted(Outcome::Probe)
                    | RecState::Counted(Outcome::Unanswered)
            );
            if resolvable {
                source.set_state(&key, RecState::Counted(Outcome::Rejected));
                alerts.extend(self.evaluate(scanner, source, &key, now));
            }
        }
        alerts
    }

    /// [`ScanInput::Reply`]: a UDP flow with a reply is forgotten; a SYN/ACK-answered SYN waits
    /// for its handshake.
    fn reply(&self, now: Timestamp, flow: &Flow) {
        let key = Key::answered(flow);
        let src = self.s.source(flow.src);
        let mut shard = self.shard(src);
        if key.tech == Technique::Udp {
            shard.forget(src, &key);
            return;
        }
        let Some(source) = shard.sources.get_mut(&src) else {
            return;
        };
        let Some(rec) = source.records.get(&key) else {
            return;
        };
        let new = match rec.state {
            RecState::Candidate { .. } | RecState::Counted(Outcome::Unanswered) => {
                RecState::Replied { since: now }
            }
            _ => return,
        };
        source.set_state(&key, new);
        source.next_due = source
            .next_due
            .min(now.saturating_add(self.s.t.answer_timeout));
    }

    /// [`ScanInput::Established`]: a completed connection is forgotten as a probe and, with
    /// blocking on, kept as proof (`proof`): the source got the target's SYN/ACK at its
    /// address. Enough proof blocks it.
    fn established(&self, now: Timestamp, flow: &Flow) -> Vec<ScanAlert> {
        let key = Key::answered(flow);
        let src = self.s.source(flow.src);
        let mut shard = self.shard(src);
        shard.forget(src, &key);
        if !self.s.cfg.block
            || flow.proto != proto::TCP
            || !self.s.counts(flow.src, flow.dst, flow.dport)
        {
            return Vec::new();
        }
        // Only sources seen sending SYNs have a record; a client's connections cost nothing.
        let Some(source) = shard.sources.get_mut(&src) else {
            return Vec::new();
        };
        let cap = self.s.max_records_per_source;
        let Some(proven) = source
            .proof
            .record(flow.dst, flow.dport, now, self.s.t.window, cap)
        else {
            return Vec::new();
        };
        // Port scans only: many hosts on one port is what a busy client does (a browser on
        // 443), and blocking on it would cut off the protected side's own users.
        let n = proven.ports;
        let counts = Counts {
            n,
            rejects: 0,
            answered: n,
        };
        let level = self.s.level(Shape::Scan, Technique::Syn, counts);
        let (action, block) = self.s.action(level, src, true);
        if block.is_none() || level <= source.proof.level {
            return Vec::new();
        }
        source.proof.level = level;
        vec![ScanAlert {
            scanner: flow.src,
            group: source_group(src),
            scan_type: ScanType::new(Shape::Scan, false),
            technique: Technique::Syn,
            targets: vec![flow.dst],
            ntargets: 1,
            proto: proto::TCP,
            ports: source.proof.port_range(flow.dst),
            nports: n as usize,
            probes: u64::from(n),
            rejects: 0,
            kinds: vec![ProbeKind::Syn],
            level,
            action,
            block,
        }]
    }

    /// [`ScanInput::Closed`]: leaves a tombstone; a SYN/ACK-answered SYN that never completed
    /// is a half-open probe.
    fn closed(&self, now: Timestamp, flow: &Flow) -> Vec<ScanAlert> {
        let until = now.saturating_add(Duration::from_secs(self.s.cfg.tombstone_ttl));
        lock(&self.tombstones).insert(Tuple::of(flow), until, self.s.cfg.max_tombstones);
        if flow.proto != proto::TCP || !self.s.counts(flow.src, flow.dst, flow.dport) {
            return Vec::new();
        }
        let src = self.s.source(flow.src);
        let key = Key::answered(flow);
        let mut shard = self.shard(src);
        let Some(source) = shard.sources.get_mut(&src) else {
            return Vec::new();
        };
        match source.records.get(&key) {
            Some(rec) if matches!(rec.state, RecState::Replied { .. }) => {
                source.set_state(&key, RecState::Counted(Outcome::HalfOpen));
                self.evaluate(src, source, &key, now)
            }
            _ => Vec::new(),
        }
    }

    /// Checks the host and the port of `key` against the thresholds; alerts on a new level.
    fn evaluate(
        &self,
        src: IpAddr,
        source: &mut Source,
        key: &Key,
        now: Timestamp,
    ) -> Vec<ScanAlert> {
        let mut alerts = Vec::new();
        for shape in [Shape::Scan, Shape::Sweep] {
            let counts = match shape {
                Shape::Scan => source.tallies.by_dst.get(&key.dst).map(|t| t.get(key.tech)),
                Shape::Sweep => source
                    .tallies
                    .by_port
                    .get(&(key.proto, key.port))
                    .map(|t| t.get(key.tech)),
            };
            let Some(counts) = counts else { continue };
            let level = self.s.level(shape, key.tech, counts);
            let mark = source.marks.get(&(shape, key.tech)).copied();
            if level == 0 || mark.is_some_and(|m| m.level >= level) {
                continue;
            }
            let at = mark.map_or(now, |m| m.at);
            source.marks.insert((shape, key.tech), Mark { level, at });
            let filtered = key.tech.reports_filtered()
                && counts.n.saturating_sub(counts.answered) * 2 > counts.n;
            let Summary {
                mut targets,
                ports,
                nports,
                probes,
                rejects,
                kinds,
            } = source.summary(key, shape);
            let ntargets = targets.len();
            targets.truncate(MAX_LISTED_TARGETS);
            // Forgeable evidence: reported, never blocked on (`proof`).
            let (action, block) = self.s.action(level, src, false);
            alerts.push(ScanAlert {
                scanner: source.addr,
                group: source_group(src),
                scan_type: ScanType::new(shape, filtered),
                technique: key.tech,
                targets,
                ntargets,
                proto: key.proto,
                ports,
                nports,
                probes,
                rejects,
                kinds,
                level,
                action,
                block,
            });
        }
        alerts
    }
}

#[cfg(test)]
mod tests;
