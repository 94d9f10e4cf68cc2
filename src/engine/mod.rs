//! The engine: one packet and a timestamp in, a [`Decision`] out.
//!
//! The packet's way, in [`Engine::process`]:
//!
//! ```text
//! decode ─► block list ─► conntrack::track ─┬─ Judged ───────────── the flow's verdict
//!                                            ├─ New ──── admission (rules) ─► open
//!                                            ├─ MidStream ── adopt (pickup, rules) or a probe
//!                                            ├─ Stray ───────────── a probe: answered, dropped
//!                                            └─ Stateless ── rules alone
//!          then observers: the scan detector hears what happened (probes, answers, milestones)
//! ```
//!
//! `admission` judges new flows and answers rejected ones, `probes` answers out-of-state
//! segments, `observe` feeds the scan detector and turns its alerts into events and blocks,
//! `timers` is the time-driven work ([`Engine::on_timer`]), `stats` the counters.
//!
//! [`Engine::process`] takes `&self` and is called by several queue workers at once: the
//! tables are sharded hash maps, the policy is swapped atomically on reload, counters are
//! atomics. Nothing here reads a clock, a file or a socket.

mod admission;
mod droplog;
mod observe;
mod offload;
mod probes;
mod stats;
mod timers;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

pub use admission::Recheck;
pub use droplog::{DropLogConfig, SUPPRESSED_EVERY};
pub use stats::Stats;
pub use timers::TimerReport;

use crate::block::{BlockEntry, Blocklist};
use crate::conntrack::{
    ConnInfo, ConnState, Conntrack, Limits, Offload, StateCounts, Timeouts, Track, Via,
};
use crate::event::Event;
use crate::packet::{Packet, PacketMeta};
use crate::ratelimit::{ProbesConfig, Rate, RateLimiter, TokenBucket};
use crate::rules::Policy;
use crate::scan::{ScanConfig, ScanDetector};
use crate::time::Timestamp;
use crate::verdict::{Action, DropReason, Pass, Verdict};

/// The engine's answer for one packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Accept (and how the packet passed) or drop (and why).
    pub verdict: Verdict,
    /// State of the connection after the packet, when it belongs to one.
    pub state: Option<ConnState>,
    /// A packet for the I/O layer to send (a RST or an ICMP unreachable), every field decided.
    pub action: Option<Action>,
    /// What the outputs report (rule matches, scan alerts, blocks); empty for most packets, and
    /// then nothing was allocated.
    pub events: Vec<Event>,
    /// The packet's flow is on the kernel fast path: an accepted packet leaves with the
    /// FASTPATH bit, and the kernel forwards the flow's middle from then on.
    pub fastpath: bool,
}

impl Decision {
    fn new(verdict: Verdict, state: Option<ConnState>) -> Decision {
        Decision {
            verdict,
            state,
            action: None,
            events: Vec::new(),
            fastpath: false,
        }
    }

    fn accept(pass: Pass, state: Option<ConnState>) -> Decision {
        Decision::new(Verdict::Accept(pass), state)
    }

    fn drop(reason: DropReason) -> Decision {
        Decision::new(Verdict::Drop(reason), None)
    }

    /// Whether the packet passes.
    pub fn accepted(&self) -> bool {
        self.verdict.is_accept()
    }

    /// Why the packet is dropped; `None` when it passes.
    pub fn reason(&self) -> Option<DropReason> {
        self.verdict.reason()
    }
}

/// Rule `log` lines per second (all rules together), and the burst allowed.
const RULE_LOG_RATE: f64 = 100.0;
/// Burst of rule `log` lines.
const RULE_LOG_BURST: u32 = 500;

/// Engine settings.
#[derive(Clone, Debug, Default)]
pub struct EngineConfig {
    /// Timeouts per state.
    pub timeouts: Timeouts,
    /// Table limits.
    pub limits: Limits,
    /// How out-of-state probes are answered (`[probes]`); the rule file's `probes` line wins.
    pub probes: ProbesConfig,
    /// Scan detection (`[scan]`); `None`: off.
    pub scan: Option<ScanConfig>,
    /// The kernel fast path (`[offload]`); off by default.
    pub offload: Offload,
    /// Which drops get a line (`[syslog] drops`); by default none.
    pub drop_log: DropLogConfig,
}

/// The connection-tracking engine.
pub struct Engine {
    config: EngineConfig,
    conntrack: Conntrack,
    counters: stats::Counters,
    policy: ArcSwap<Policy>,
    /// Pickup mode: adopt mid-stream TCP flows until this time (ns), 0 = off.
    pickup_until: AtomicU64,
    /// Rate limits of RST / ICMP answers: statewall must never be a reflector.
    answers: RateLimiter,
    /// Rate limit of rule `log` lines (a flood of new connections must not flood syslog).
    rule_logs: TokenBucket,
    /// Drop lines: which reasons, their rate limits, the suppressed ones.
    drop_log: droplog::DropLog,
    /// Scan detector, when enabled.
    scan: Option<ScanDetector>,
    /// Sources blocked after a scan (`[scan] block = true`).
    blocks: Option<Blocklist>,
    /// Whether any block may be active (skips the blocklist lock on the hot path).
    any_blocks: AtomicBool,
    /// When the table is swept next (ns).
    next_sweep: AtomicU64,
    /// Flows left the fast path other than by their own packets (a block, a recheck): the
    /// kernel must hand them back now ([`Engine::take_offload_release`]).
    offload_release: AtomicBool,
}

impl Engine {
    /// A new engine with the allow-all policy.
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            conntrack: Conntrack::new(config.timeouts.clone(), config.limits.clone())
                .with_offload(config.offload),
            counters: stats::Counters::default(),
            policy: ArcSwap::from_pointee(Policy::allow_all()),
            pickup_until: AtomicU64::new(0),
            answers: RateLimiter::new(&config.probes),
            rule_logs: TokenBucket::new(Rate::per_sec(RULE_LOG_RATE), RULE_LOG_BURST),
            drop_log: droplog::DropLog::new(&config.drop_log),
            scan: config
                .scan
                .clone()
                .map(|c| ScanDetector::new(c, config.probes.respond)),
            blocks: config.scan.as_ref().and_then(ScanConfig::blocklist),
            any_blocks: AtomicBool::new(false),
            next_sweep: AtomicU64::new(0),
            offload_release: AtomicBool::new(false),
            config,
        }
    }

    /// Judges one packet.
    pub fn process(&self, bytes: &[u8], meta: &PacketMeta<'_>, now: Timestamp) -> Decision {
        let decision = match Packet::decode(bytes, meta) {
            Ok(pkt) => {
                let mut d = self.judge(&pkt, meta, now);
                if !d.reason().is_some_and(DropReason::is_policy) {
                    self.log_drop(&pkt, meta, &mut d, now);
                }
                d
            }
            Err(e) => Decision::drop(e.into()),
        };
        self.counters.count(decision.verdict);
        decision
    }

    /// The packet's way: block list, connection tracking, admission or probe answer, and the
    /// observers along the way.
    fn judge(&self, pkt: &Packet<'_>, meta: &PacketMeta<'_>, now: Timestamp) -> Decision {
        if self.blocked(pkt, now) {
            return Decision::drop(DropReason::Blocked);
        }
        let via = Via {
            fastpath: meta.fastpath,
            admitted: meta.admitted,
        };
        match self.conntrack.track_via(pkt, via, now) {
            Track::Judged(t) => {
                let mut d = Decision::new(t.verdict, t.state);
                d.fastpath = t.offloaded && t.verdict.is_accept();
                if let Some(m) = t.milestone {
                    self.observe_milestone(m, now, &mut d.events);
                }
                d
            }
            Track::New(opening) => self.admit(pkt, meta, opening, now),
            Track::MidStream(opening) if self.pickup_active(now) => {
                self.adopt(pkt, meta, opening, now)
            }
            Track::MidStream(_) => self.stray(pkt, DropReason::NoConnection, now),
            Track::Stray(reason) => self.stray(pkt, reason, now),
            Track::Stateless => self.stateless(pkt, meta, now),
        }
    }

    /// Whether the packet comes from or goes to a blocked source.
    fn blocked(&self, pkt: &Packet<'_>, now: Timestamp) -> bool {
        if !self.any_blocks.load(Ordering::Relaxed) {
            return false;
        }
        self.blocks
            .as_ref()
            .is_some_and(|b| b.is_blocked(pkt.src, now) || b.is_blocked(pkt.dst, now))
    }

    /// Replaces the policy for new connections; tracked connections stay.
    pub fn set_policy(&self, policy: Arc<Policy>) {
        self.policy.store(policy);
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Adopts unknown mid-stream TCP flows until `until` (after a restart); `None` turns
    /// pickup off.
    pub fn set_pickup_until(&self, until: Option<Timestamp>) {
        let v = until.map_or(0, |t| t.as_nanos().max(1));
        self.pickup_until.store(v, Ordering::Relaxed);
    }

    fn pickup_active(&self, now: Timestamp) -> bool {
        now.as_nanos() < self.pickup_until.load(Ordering::Relaxed)
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Number of tracked entries.
    pub fn entries(&self) -> usize {
        self.conntrack.entries()
    }

    /// Live connections per state.
    pub fn state_counts(&self, now: Timestamp) -> StateCounts {
        self.conntrack.state_counts(now)
    }

    /// Lists live connections matching `filter`.
    pub fn connections(&self, now: Timestamp, filter: impl Fn(&ConnInfo) -> bool) -> Vec<ConnInfo> {
        self.conntrack.connections(now, filter)
    }

    /// Active blocks.
    pub fn blocks(&self, now: Timestamp) -> Vec<BlockEntry> {
        self.blocks
            .as_ref()
            .map(|b| b.list(now))
            .unwrap_or_default()
    }

    /// Lifts the blocks covering `ip`; returns the events (empty: it was not blocked).
    pub fn unblock(&self, ip: IpAddr, now: Timestamp) -> Result<Vec<Event>, String> {
        let blocks = self
            .blocks
            .as_ref()
            .ok_or_else(|| "automatic blocking is off ([scan] block = false)".to_string())?;
        Ok(blocks
            .unblock(ip, now)
            .into_iter()
            .map(Event::Block)
            .collect())
    }

    /// Human description of the scan detector's settings (printed at startup).
    pub fn scan_description(&self) -> Option<String> {
        self.scan.as_ref().map(ScanDetector::describe)
    }
}

#[cfg(test)]
mod tests;
