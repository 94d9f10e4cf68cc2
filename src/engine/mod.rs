//! The engine: one packet and a timestamp in, a [`Decision`] out.
//!
//! The packet's way, in [`Engine::process`]:
//!
//! ```text
//! decode ─► block list ─► conntrack::track ─┬─ Judged ───────────── the flow's verdict
//!                                            ├─ New ──── admission (rules) ─► open
//!                                            ├─ Resumed ── an evicted handshake completed
//!                                            ├─ MidStream ── adopt (pickup, rules) or a probe
//!                                            ├─ Stray ───────────── a probe: answered, dropped
//!                                            └─ Stateless ── rules alone
//!          then observers: the scan detector hears what happened (probes, answers, milestones)
//! ```
//!
//! `admission` judges new flows and answers rejected ones, `probes` answers out-of-state
//! segments, `observe` feeds the scan detector and turns its alerts into events and blocks,
//! `timers` is the time-driven work ([`Engine::on_timer`]), `stats` the counters, `operator`
//! what an operator asks of it (kill, block, unblock, the rule sets behind the listings).
//!
//! Connection and drop events ([`Event::New`], [`Event::Destroy`], [`Event::Drop`]) are built
//! only while an output listens ([`Engine::set_interest`]): otherwise a packet costs one
//! relaxed atomic load more, and nothing is allocated.
//!
//! [`Engine::process`] takes `&self` and is called by several queue workers at once: the
//! tables are sharded hash maps, the policy is swapped atomically on reload, counters are
//! atomics. Nothing here reads a clock, a file or a socket.

mod admission;
mod adopt;
mod droplog;
mod observe;
mod offload;
mod operator;
mod probes;
mod stats;
mod timers;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

pub use admission::Recheck;
pub use adopt::Role;
pub use droplog::{DropLogConfig, SUPPRESSED_EVERY};
pub use operator::{BlockError, Kill};
pub use stats::Stats;
pub use timers::TimerReport;

use crate::block::{BlockEntry, Blocklist};
use crate::conntrack::{
    ConnInfo, ConnState, Conntrack, Limits, Offload, StateCounts, Timeouts, Track, Via,
};
use crate::event::{DropEvent, Event, Interest, LoggedPacket};
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

/// A rule set in force, with the generation number its connections are tagged with.
#[derive(Debug)]
struct RuleSet {
    generation: u8,
    policy: Arc<Policy>,
}

/// Rule sets remembered after a reload, so that connections they admitted still name their
/// rule.
const RULESET_HISTORY: usize = 8;

/// The connection-tracking engine.
pub struct Engine {
    config: EngineConfig,
    conntrack: Conntrack,
    counters: stats::Counters,
    rules: ArcSwap<RuleSet>,
    /// Earlier rule sets, newest first (at most [`RULESET_HISTORY`]).
    earlier_rules: Mutex<VecDeque<Arc<RuleSet>>>,
    /// [`Interest::bits`] of the outputs listening.
    interest: AtomicU8,
    /// Pickup mode: adopt mid-stream TCP flows until this time (ns), 0 = off.
    pickup_until: AtomicU64,
    /// Unknown mid-stream segments are dropped silently until this time (ns): the takeover
    /// window; `u64::MAX` on a standby, 0 = never ([`Role`]).
    takeover_until: AtomicU64,
    /// Rate limits of RST / ICMP answers: statewall must never be a reflector.
    answers: RateLimiter,
    /// Rate limit of rule `log` lines (a flood of new connections must not flood syslog).
    rule_logs: TokenBucket,
    /// Drop lines: which reasons, their rate limits, the suppressed ones.
    drop_log: droplog::DropLog,
    /// Scan detector, when enabled.
    scan: Option<ScanDetector>,
    /// Blocked sources: by an operator, or after a scan (`[scan] block = true`).
    blocks: Blocklist,
    /// Whether scan alerts block their source.
    auto_block: bool,
    /// When the table is swept next (ns).
    next_sweep: AtomicU64,
    /// Flows left the fast path other than by their own packets (a block, a recheck): the
    /// kernel must hand them back now ([`Engine::take_offload_release`]).
    offload_release: AtomicBool,
}

impl Engine {
    /// A new engine with the allow-all policy. One source is what `config.limits.sources`
    /// says, for the per-source limit, the scan detector and the answer rate limits alike.
    pub fn new(mut config: EngineConfig) -> Engine {
        if let Some(scan) = &mut config.scan {
            scan.sources = config.limits.sources;
        }
        let scan_blocks = config.scan.as_ref().and_then(ScanConfig::blocklist);
        Engine {
            conntrack: Conntrack::new(config.timeouts.clone(), config.limits.clone())
                .with_offload(config.offload),
            counters: stats::Counters::default(),
            rules: ArcSwap::from_pointee(RuleSet {
                generation: 0,
                policy: Arc::new(Policy::allow_all()),
            }),
            earlier_rules: Mutex::new(VecDeque::new()),
            interest: AtomicU8::new(0),
            pickup_until: AtomicU64::new(0),
            takeover_until: AtomicU64::new(0),
            answers: RateLimiter::new(&config.probes, config.limits.sources),
            rule_logs: TokenBucket::new(Rate::per_sec(RULE_LOG_RATE), RULE_LOG_BURST),
            drop_log: droplog::DropLog::new(&config.drop_log),
            scan: config
                .scan
                .clone()
                .map(|c| ScanDetector::new(c, config.probes.respond)),
            auto_block: scan_blocks.is_some(),
            blocks: scan_blocks.unwrap_or_else(operator::manual_blocklist),
            next_sweep: AtomicU64::new(0),
            offload_release: AtomicBool::new(false),
            config,
        }
    }

    /// Judges one packet.
    pub fn process(&self, bytes: &[u8], meta: &PacketMeta<'_>, now: Timestamp) -> Decision {
        // The decoded packet is used by reference, and the decision built once and updated in
        // place: moving either copies it (144 and 96 bytes), on every packet.
        let decoded = Packet::decode(bytes, meta);
        let mut decision = match &decoded {
            Ok(pkt) => self.judge(pkt, meta, now),
            Err(e) => Decision::drop((*e).into()),
        };
        if let Ok(pkt) = &decoded {
            if !decision.accepted() {
                self.drop_events(pkt, meta, &mut decision, now);
            } else if pkt.frag.is_some() {
                // A first fragment that passed lets its datagram's later fragments follow.
                self.conntrack.first_fragment_passed(pkt, now);
            }
        }
        self.counters.count(decision.verdict);
        decision
    }

    /// A dropped packet's line and stream event (out of the accepted packets' way).
    #[cold]
    #[inline(never)]
    fn drop_events(
        &self,
        pkt: &Packet<'_>,
        meta: &PacketMeta<'_>,
        d: &mut Decision,
        now: Timestamp,
    ) {
        if !d.reason().is_some_and(DropReason::is_policy) {
            self.log_drop(pkt, meta, d, now);
        }
        self.stream_drop(pkt, meta, d);
    }

    /// The drop event of a dropped packet for the event stream, while a reader listens and
    /// no drop line carries it already (an undecodable packet has none: counted only).
    fn stream_drop(&self, pkt: &Packet<'_>, meta: &PacketMeta<'_>, d: &mut Decision) {
        let Verdict::Drop(reason) = d.verdict else {
            return;
        };
        if !self.interest().drops || d.events.iter().any(|e| matches!(e, Event::Drop(_))) {
            return;
        }
        d.events.push(Event::Drop(DropEvent {
            reason,
            packet: LoggedPacket::of(pkt, meta),
            line: false,
        }));
    }

    /// Which optional events the outputs listen to: the daemon sets it whenever a client of
    /// `statewall events` comes or goes, or an event log is configured.
    pub fn set_interest(&self, interest: Interest) {
        self.interest.store(interest.bits(), Ordering::Relaxed);
    }

    /// The optional events being built.
    pub fn interest(&self) -> Interest {
        Interest::from_bits(self.interest.load(Ordering::Relaxed))
    }

    /// The packet's way: block list, connection tracking, admission or probe answer, and the
    /// observers along the way ([`Engine::process`] then records a passed first fragment, or
    /// the drop's events).
    fn judge(&self, pkt: &Packet<'_>, meta: &PacketMeta<'_>, now: Timestamp) -> Decision {
        if self.blocked(pkt, now) {
            return Decision::drop(DropReason::Blocked);
        }
        self.track(pkt, meta, now)
    }

    /// Connection tracking, then admission or a probe answer.
    fn track(&self, pkt: &Packet<'_>, meta: &PacketMeta<'_>, now: Timestamp) -> Decision {
        let via = Via {
            fastpath: meta.fastpath,
            admitted: meta.admitted,
        };
        // Matched by reference: moving the tracked entry's outcome out copies it.
        match &self.conntrack.track_via(pkt, via, now) {
            Track::Judged(t) => {
                if let Some(flow) = t.adopted {
                    if !self.adoption_allowed(pkt, meta, &flow) {
                        return self.refuse_adopted(&flow, now);
                    }
                }
                let mut events = Vec::new();
                if let Some(m) = t.milestone {
                    self.observe_milestone(m, now, &mut events);
                }
                // Built where it is returned (a `let` then a move copies it).
                Decision {
                    verdict: t.verdict,
                    state: t.state,
                    action: None,
                    events,
                    fastpath: t.offloaded && t.verdict.is_accept(),
                }
            }
            Track::New(opening) => self.admit(pkt, meta, *opening, now),
            Track::Resumed(opening) => self.resume(*opening, now),
            Track::MidStream(opening) if self.pickup_active(now) => {
                self.adopt(pkt, meta, *opening, now)
            }
            Track::MidStream(_) | Track::Stray(DropReason::NoConnection)
                if self.takeover_active(now) =>
            {
                Decision::drop(DropReason::TakeoverUnknown)
            }
            Track::MidStream(_) => self.stray(pkt, DropReason::NoConnection, now),
            Track::Stray(reason) => self.stray(pkt, *reason, now),
            Track::Stateless => self.stateless(pkt, meta, now),
        }
    }

    /// Whether the packet comes from a blocked source, or goes to a network an operator blocked
    /// (each O(1), one atomic load while no such block exists: see [`Blocklist`]). A scan's
    /// block drops only what the scanner sends: traffic *to* it is the rules' business, and
    /// such a block can never cut an address off from the others.
    fn blocked(&self, pkt: &Packet<'_>, now: Timestamp) -> bool {
        self.blocks.is_blocked(pkt.src, now) || self.blocks.is_blocked_to(pkt.dst, now)
    }

    /// Replaces the policy for new connections; tracked connections stay (and keep naming
    /// the rule that admitted them while their rule set is among the last few).
    pub fn set_policy(&self, policy: Arc<Policy>) {
        let mut earlier = self
            .earlier_rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let old = self.rules.load_full();
        let generation = old.generation.wrapping_add(1);
        self.rules.store(Arc::new(RuleSet { generation, policy }));
        earlier.push_front(old);
        earlier.truncate(RULESET_HISTORY);
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.rules.load().policy)
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

    /// Datagrams whose later fragments may pass (see `conntrack::Fragments`).
    pub fn fragment_datagrams(&self) -> usize {
        self.conntrack.fragment_datagrams()
    }

    /// Live connections per state.
    pub fn state_counts(&self, now: Timestamp) -> StateCounts {
        self.conntrack.state_counts(now)
    }

    /// Lists live connections matching `filter`.
    pub fn connections(&self, now: Timestamp, filter: impl Fn(&ConnInfo) -> bool) -> Vec<ConnInfo> {
        self.conntrack.connections(now, filter)
    }

    /// Tracked entries per family: (IPv4, IPv6).
    pub fn family_entries(&self) -> (u64, u64) {
        self.conntrack.family_entries()
    }

    /// Active blocks.
    pub fn blocks(&self, now: Timestamp) -> Vec<BlockEntry> {
        self.blocks.list(now)
    }

    /// Human description of the scan detector's settings (printed at startup).
    pub fn scan_description(&self) -> Option<String> {
        self.scan.as_ref().map(ScanDetector::describe)
    }
}

#[cfg(test)]
mod tests;
