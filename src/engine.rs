//! The engine: one packet and a timestamp in, a [`Decision`] out.
//!
//! [`Engine::process`] takes `&self` and is called by several queue workers at once: the
//! tables are sharded hash maps, the policy is swapped atomically on reload, counters are
//! atomics. Nothing here reads a clock, a file or a socket.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::block::{BlockEntry, Blocklist};
use crate::conntrack::tcp::{check_flags, Step};
use crate::conntrack::{
    flags, Addr, Conn, ConnState, Dir, InsertError, Key, Limits, ProtoState, Table, TableCounts,
    TcpConn, TcpState, Timeouts,
};
use crate::event::{Event, LoggedPacket, RuleMatch};
use crate::packet::{IcmpKind, Packet, PacketMeta, Seq, TcpFlags, TcpHeader, Transport};
use crate::proto;
use crate::ratelimit::{ProbesConfig, Rate, RateLimiter, TokenBucket};
use crate::respond::{rst_answering, unreachable_answering};
use crate::rules::{Policy, Query, RuleAction};
use crate::scan::{AnswerKind, ProbeKind, ScanAlert, ScanConfig, ScanDetector, ScanEvent};
use crate::time::{Tick, Timestamp};
pub use crate::verdict::{Action, DropReason, Flow, Pass, ProbeMode, Rst, Verdict};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

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
}

impl Decision {
    fn accept(pass: Pass, state: Option<ConnState>) -> Decision {
        Decision {
            verdict: Verdict::Accept(pass),
            state,
            action: None,
            events: Vec::new(),
        }
    }

    fn drop(reason: DropReason, state: Option<ConnState>) -> Decision {
        Decision {
            verdict: Verdict::Drop(reason),
            state,
            action: None,
            events: Vec::new(),
        }
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

/// Result of [`Engine::recheck`].
#[derive(Debug, Default)]
pub struct Recheck {
    /// Connections closed.
    pub revoked: u64,
    /// RSTs toward both ends of closed connections whose rule says `reject`.
    pub actions: Vec<Action>,
}

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
}

/// Counters, readable at any time as a [`Stats`] snapshot.
#[derive(Debug)]
struct Counters {
    packets: AtomicU64,
    accepted: AtomicU64,
    ignored: AtomicU64,
    new_conns: AtomicU64,
    related: AtomicU64,
    fragments: AtomicU64,
    expired: AtomicU64,
    early_drops: AtomicU64,
    answered: AtomicU64,
    answers_limited: AtomicU64,
    logs_suppressed: AtomicU64,
    drops: Vec<AtomicU64>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            packets: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            ignored: AtomicU64::new(0),
            new_conns: AtomicU64::new(0),
            related: AtomicU64::new(0),
            fragments: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            early_drops: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            answers_limited: AtomicU64::new(0),
            logs_suppressed: AtomicU64::new(0),
            drops: DropReason::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A snapshot of the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Packets processed.
    pub packets: u64,
    /// Packets accepted.
    pub accepted: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// Accepted without learning.
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
    /// Entries in the tables.
    pub entries: u64,
    /// RSTs and ICMP unreachables asked for (probes and rejects).
    pub answered: u64,
    /// Answers suppressed by the rate limits (the packet was dropped silently).
    pub answers_limited: u64,
    /// Rule `log` lines suppressed by their rate limit.
    pub logs_suppressed: u64,
    /// Drops per reason (reasons with a zero count omitted).
    pub drops: Vec<(String, u64)>,
}

/// Connections per state (a walk over the tables).
pub type StateCounts = Vec<(String, u64)>;

/// One connection, as `statewall conns` lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ConnInfo {
    /// Protocol name or number.
    pub proto: String,
    /// Originator address.
    pub src: IpAddr,
    /// Responder address.
    pub dst: IpAddr,
    /// Originator port (or ICMP id).
    pub sport: u16,
    /// Responder port.
    pub dport: u16,
    /// State.
    pub state: String,
    /// Seconds until expiry.
    pub expires_in: u32,
    /// Handshake completed / both directions seen.
    pub assured: bool,
}

/// The connection-tracking engine.
pub struct Engine {
    config: EngineConfig,
    v4: Table<[u8; 4]>,
    v6: Table<[u8; 16]>,
    counts: TableCounts,
    counters: Counters,
    policy: ArcSwap<Policy>,
    /// Pickup mode: adopt mid-stream TCP flows until this time (ns), 0 = off.
    pickup_until: AtomicU64,
    /// Rate limits of RST / ICMP answers: statewall must never be a reflector.
    answers: RateLimiter,
    /// Rate limit of rule `log` lines (a flood of new connections must not flood syslog).
    rule_logs: TokenBucket,
    /// Scan detector, when enabled.
    scan: Option<ScanDetector>,
    /// Sources blocked after a scan (`[scan] block = true`).
    blocks: Option<Blocklist>,
    /// Whether any block may be active (skips the blocklist lock on the hot path).
    any_blocks: AtomicBool,
    /// Alerts produced outside `process` (expiry), collected by [`Engine::tick`].
    pending_alerts: Mutex<Vec<Event>>,
}

/// Which family table and key a packet maps to.
enum Route<'e> {
    V4(&'e Table<[u8; 4]>, [u8; 4], [u8; 4]),
    V6(&'e Table<[u8; 16]>, [u8; 16], [u8; 16]),
}

impl Engine {
    /// A new engine with the allow-all policy.
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            v4: Table::new(),
            v6: Table::new(),
            counts: TableCounts::default(),
            counters: Counters::default(),
            policy: ArcSwap::from_pointee(Policy::allow_all()),
            pickup_until: AtomicU64::new(0),
            answers: RateLimiter::new(&config.probes),
            rule_logs: TokenBucket::new(Rate::per_sec(RULE_LOG_RATE), RULE_LOG_BURST),
            scan: config
                .scan
                .clone()
                .map(|c| ScanDetector::new(c, config.probes.respond)),
            blocks: config.scan.as_ref().and_then(ScanConfig::blocklist),
            any_blocks: AtomicBool::new(false),
            pending_alerts: Mutex::new(Vec::new()),
            config,
        }
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

    /// Judges one packet.
    pub fn process(&self, bytes: &[u8], meta: &PacketMeta<'_>, now: Timestamp) -> Decision {
        bump(&self.counters.packets);
        let decision = match Packet::decode(bytes, meta) {
            Ok(pkt) => self.judge(&pkt, meta, now),
            Err(e) => Decision::drop(e.into(), None),
        };
        match decision.verdict {
            Verdict::Drop(r) => {
                bump(&self.counters.drops[r as usize]);
                tracing::trace!(reason = r.name(), "drop");
            }
            Verdict::Accept(pass) => {
                bump(&self.counters.accepted);
                match pass {
                    Pass::Tracked | Pass::Stateless => {}
                    Pass::Opened => bump(&self.counters.new_conns),
                    Pass::Ignored => bump(&self.counters.ignored),
                    Pass::Related => bump(&self.counters.related),
                    Pass::Fragment => bump(&self.counters.fragments),
                }
            }
        }
        decision
    }

    fn route(&self, src: IpAddr, dst: IpAddr) -> Option<Route<'_>> {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Some(Route::V4(&self.v4, s.octets(), d.octets())),
            (IpAddr::V6(s), IpAddr::V6(d)) => Some(Route::V6(&self.v6, s.octets(), d.octets())),
            _ => None,
        }
    }

    fn judge(&self, pkt: &Packet<'_>, meta: &PacketMeta<'_>, now: Timestamp) -> Decision {
        if self.any_blocks.load(Ordering::Relaxed) {
            if let Some(b) = &self.blocks {
                if b.is_blocked(pkt.src, now) || b.is_blocked(pkt.dst, now) {
                    return Decision::drop(DropReason::Blocked, None);
                }
            }
        }
        let Some(route) = self.route(pkt.src, pkt.dst) else {
            return Decision::drop(DropReason::MalformedIp, None);
        };
        match route {
            Route::V4(t, s, d) => self.judge_in(t, s, d, pkt, meta, now),
            Route::V6(t, s, d) => self.judge_in(t, s, d, pkt, meta, now),
        }
    }

    fn judge_in<A: Addr>(
        &self,
        table: &Table<A>,
        src: A,
        dst: A,
        pkt: &Packet<'_>,
        meta: &PacketMeta<'_>,
        now: Timestamp,
    ) -> Decision {
        let flow = FlowCtx {
            table,
            src,
            dst,
            pkt,
            meta,
            now,
        };
        match &pkt.transport {
            Transport::Tcp(tcp) => self.tcp(&flow, tcp),
            Transport::Udp { sport, dport } => {
                let t = &self.config.timeouts;
                self.datagram(
                    &flow,
                    *sport,
                    *dport,
                    true,
                    (t.udp_unreplied, t.udp_replied),
                )
            }
            Transport::Icmp(icmp) => {
                let t = self.config.timeouts.icmp;
                match icmp.kind {
                    IcmpKind::EchoRequest { id } => self.datagram(&flow, id, id, true, (t, t)),
                    IcmpKind::EchoReply { id } => self.datagram(&flow, id, id, false, (t, t)),
                    IcmpKind::Error(e) => self.related(&flow, &e),
                    IcmpKind::Other => self.stateless(&flow),
                }
            }
            Transport::Fragment => Decision::accept(Pass::Fragment, None),
            Transport::Other => {
                let t = &self.config.timeouts;
                self.datagram(&flow, 0, 0, true, (t.generic_unreplied, t.generic_replied))
            }
        }
    }

    /// TCP: flag check, then the connection's state machine, or a new connection for a SYN.
    fn tcp<A: Addr>(&self, f: &FlowCtx<'_, A>, tcp: &TcpHeader) -> Decision {
        let (key, from_lo) = Key::new(proto::TCP, f.src, tcp.sport, f.dst, tcp.dport);
        let now = f.now.tick();
        if let Err(reason) = check_flags(tcp.flags) {
            let mut d = Decision::drop(reason, None);
            if f.table.peek(&key, now).is_none() {
                // A stealth probe (NULL, XMAS, SYN+FIN...) of no connection.
                let answered = self.answer_probe(f, tcp, &mut d);
                self.scan_probe(f, tcp, answered, &mut d);
            }
            return d;
        }
        if let Some(mut entry) = f.table.get_live(&key, now, &self.counts) {
            let conn = entry.value_mut();
            if conn.has(flags::REVOKED) {
                return Decision::drop(DropReason::Revoked, Some(conn.state()));
            }
            let dir = conn.dir(from_lo);
            let ProtoState::Tcp(tc) = &mut conn.proto else {
                return Decision::drop(DropReason::MalformedTcp, None);
            };
            let old = tc.state;
            match tc.track(dir, tcp) {
                Ok(Step::Accept) => {
                    let new = tc.state;
                    let timeout = tc.timeout(&self.config.timeouts);
                    self.learned(conn, dir, now, timeout);
                    let assured_now = !conn.has(flags::ASSURED)
                        && ((old == TcpState::SynRecv && new == TcpState::Established)
                            || (conn.has(flags::PICKUP) && dir == Dir::Reply));
                    if assured_now {
                        conn.flags |= flags::ASSURED;
                        conn.flags &= !flags::PICKUP;
                    }
                    let mut events = Vec::new();
                    if let Some(scan) = &self.scan {
                        let ((client, _), (server, port)) =
                            key.endpoints(conn.has(flags::ORIG_IS_LO));
                        let handshake = matches!(old, TcpState::SynSent | TcpState::SynSent2);
                        if assured_now {
                            scan.observe_established(client, server, proto::TCP, port, f.now);
                        } else if handshake && new == TcpState::SynRecv && dir == Dir::Reply {
                            scan.observe_reply(client, server, proto::TCP, port, f.now);
                        } else if handshake && new == TcpState::Close && dir == Dir::Reply {
                            let kind = AnswerKind::TcpRst;
                            let n = f.now;
                            self.scan_answer(
                                client,
                                server,
                                proto::TCP,
                                port,
                                kind,
                                n,
                                &mut events,
                            );
                        }
                    }
                    if conn.has(flags::PICKUP) {
                        conn.expires = conn
                            .expires
                            .min(now.after_secs(self.config.timeouts.pickup));
                    }
                    if old != new {
                        tracing::trace!(from = %old, to = %new, "tcp state");
                        let limit = self.config.limits.per_source_limit();
                        let key = *entry.key();
                        f.table.recount(&key, entry.value_mut(), limit);
                    }
                    let mut d = Decision::accept(Pass::Tracked, Some(ConnState::Tcp(new)));
                    d.events = events;
                    return d;
                }
                Ok(Step::Ignore) => {
                    return Decision::accept(Pass::Ignored, Some(ConnState::Tcp(tc.state)));
                }
                Err(reason) => return Decision::drop(reason, Some(ConnState::Tcp(old))),
                Ok(Step::Reopen) => {
                    // Judged below as a new connection; the insert replaces the old entry.
                    drop(entry);
                }
            }
        }
        let f_ = tcp.flags;
        if f_.syn() && !f_.ack() {
            return self.open(f, key, from_lo, tcp.sport, tcp.dport, None, || {
                ProtoState::Tcp(TcpConn::from_syn(tcp))
            });
        }
        if self.pickup_active(f.now) && f_.ack() && !f_.syn() && !f_.rst() {
            // Adopt a flow that was established before a restart: no policy check, it was
            // allowed when it opened.
            let conn = Conn {
                expires: now.after_secs(self.config.timeouts.pickup),
                flags: flags::PICKUP | if from_lo { flags::ORIG_IS_LO } else { 0 },
                proto: ProtoState::Tcp(TcpConn::pickup(tcp)),
            };
            return match self.insert(f.table, key, f.src, conn) {
                Ok(()) => {
                    Decision::accept(Pass::Opened, Some(ConnState::Tcp(TcpState::Established)))
                }
                Err(reason) => Decision::drop(reason, None),
            };
        }
        let mut d = Decision::drop(DropReason::NoConnection, None);
        let answered = self.answer_probe(f, tcp, &mut d);
        self.scan_probe(f, tcp, answered, &mut d);
        d
    }

    /// Reports a TCP segment of no connection to the scan detector (and the RST statewall
    /// answered it with, if `answered`).
    fn scan_probe<A: Addr>(
        &self,
        f: &FlowCtx<'_, A>,
        tcp: &TcpHeader,
        answered: bool,
        d: &mut Decision,
    ) {
        let Some(kind) = ProbeKind::from_tcp_flags(tcp.flags) else {
            return;
        };
        self.scan_event(f, tcp.sport, tcp.dport, kind, d);
        if answered {
            let (src, dst) = (f.pkt.src, f.pkt.dst);
            let answer = AnswerKind::TcpRst;
            self.scan_answer(
                src,
                dst,
                proto::TCP,
                tcp.dport,
                answer,
                f.now,
                &mut d.events,
            );
        }
    }

    fn scan_event<A: Addr>(
        &self,
        f: &FlowCtx<'_, A>,
        sport: u16,
        dport: u16,
        kind: ProbeKind,
        d: &mut Decision,
    ) {
        if let Some(scan) = &self.scan {
            let ev = ScanEvent {
                src: f.pkt.src,
                dst: f.pkt.dst,
                proto: f.pkt.proto,
                sport,
                dport,
                kind,
            };
            let alerts = scan.observe(&ev, f.now);
            self.raise(alerts, f.now, &mut d.events);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn scan_answer(
        &self,
        scanner: IpAddr,
        target: IpAddr,
        proto: u8,
        port: u16,
        kind: AnswerKind,
        now: Timestamp,
        out: &mut Vec<Event>,
    ) {
        if let Some(scan) = &self.scan {
            let alerts = scan.observe_answer(scanner, target, proto, port, kind, now);
            self.raise(alerts, now, out);
        }
    }

    /// Turns scan alerts into events, blocking the scanner when the alert says so.
    fn raise(&self, alerts: Vec<ScanAlert>, now: Timestamp, out: &mut Vec<Event>) {
        for alert in alerts {
            let block = alert
                .block
                .zip(self.blocks.as_ref())
                .and_then(|(net, blocks)| {
                    blocks.block(alert.scanner, net, alert.scan_type.name(), now)
                });
            out.push(Event::Scan(alert));
            if let Some(ev) = block {
                self.any_blocks.store(true, Ordering::SeqCst);
                out.push(Event::Block(ev));
            }
        }
    }

    /// Time-driven work, every second or faster: scan alerts that need time to pass
    /// ("filtered" scans), block expiry, alerts from expired connections. Returns the events.
    pub fn tick(&self, now: Timestamp) -> Vec<Event> {
        let mut out = std::mem::take(
            &mut *self
                .pending_alerts
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        if let Some(scan) = &self.scan {
            let alerts = scan.tick(now);
            self.raise(alerts, now, &mut out);
        }
        if let Some(blocks) = &self.blocks {
            out.extend(blocks.expire(now).into_iter().map(Event::Block));
            if blocks.list(now).is_empty() {
                self.any_blocks.store(false, Ordering::SeqCst);
                // A block added meanwhile must not be lost: look again after clearing.
                if !blocks.list(now).is_empty() {
                    self.any_blocks.store(true, Ordering::SeqCst);
                }
            }
        }
        out
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

    /// Whether out-of-state probes get a RST: the rule file's `probes` line, else `[probes]`.
    fn probes_answered(&self) -> bool {
        match self.policy.load().probes() {
            Some(mode) => mode == ProbeMode::Rst,
            None => self.config.probes.respond == ProbeMode::Rst,
        }
    }

    /// Asks for a RST answering a probe, within the rate limits. Never answers a RST. Returns
    /// whether it did.
    fn answer_probe<A: Addr>(&self, f: &FlowCtx<'_, A>, tcp: &TcpHeader, d: &mut Decision) -> bool {
        if !self.probes_answered() {
            return false;
        }
        let Some(rst) = rst_answering(f.pkt.src, f.pkt.dst, tcp) else {
            return false;
        };
        if !self.take_answer(f) {
            return false;
        }
        d.action = Some(Action::SendRst(rst));
        true
    }

    /// Takes a token for one answer to `f`'s source.
    fn take_answer<A: Addr>(&self, f: &FlowCtx<'_, A>) -> bool {
        if self.answers.try_take(f.pkt.src, f.now).is_ok() {
            bump(&self.counters.answered);
            true
        } else {
            bump(&self.counters.answers_limited);
            false
        }
    }

    /// UDP, ICMP echo and other protocols: a flow per tuple, unreplied then replied.
    fn datagram<A: Addr>(
        &self,
        f: &FlowCtx<'_, A>,
        sport: u16,
        dport: u16,
        may_open: bool,
        (unreplied, replied): (u32, u32),
    ) -> Decision {
        let (key, from_lo) = Key::new(f.pkt.proto, f.src, sport, f.dst, dport);
        let now = f.now.tick();
        if let Some(mut entry) = f.table.get_live(&key, now, &self.counts) {
            let conn = entry.value_mut();
            if conn.has(flags::REVOKED) {
                return Decision::drop(DropReason::Revoked, Some(conn.state()));
            }
            let dir = conn.dir(from_lo);
            if dir == Dir::Reply && !conn.has(flags::SEEN_REPLY) {
                if let (Some(scan), proto::UDP) = (&self.scan, key.proto) {
                    let ((client, _), (server, port)) = key.endpoints(conn.has(flags::ORIG_IS_LO));
                    scan.observe_reply(client, server, proto::UDP, port, f.now);
                }
            }
            if dir == Dir::Reply {
                conn.flags |= flags::SEEN_REPLY | flags::ASSURED;
            }
            let timeout = if conn.has(flags::SEEN_REPLY) {
                replied
            } else {
                unreplied
            };
            conn.expires = now.after_secs(timeout);
            return Decision::accept(Pass::Tracked, Some(conn.state()));
        }
        if !may_open {
            return Decision::drop(DropReason::IcmpUnexpectedReply, None);
        }
        let icmp = match &f.pkt.transport {
            Transport::Icmp(h) => Some((h.icmp_type, h.code)),
            _ => None,
        };
        let (qs, qd) = if icmp.is_some() {
            (0, 0)
        } else {
            (sport, dport)
        };
        self.open(f, key, from_lo, qs, qd, icmp, || ProtoState::Datagram)
    }

    /// Opens a connection if the policy allows it.
    #[allow(clippy::too_many_arguments)]
    fn open<A: Addr>(
        &self,
        f: &FlowCtx<'_, A>,
        key: Key<A>,
        from_lo: bool,
        sport: u16,
        dport: u16,
        icmp: Option<(u8, u8)>,
        state: impl FnOnce() -> ProtoState,
    ) -> Decision {
        let mut d = self.check_policy(f, sport, dport, icmp);
        let kind = match (f.pkt.proto, d.accepted()) {
            (proto::TCP, true) => Some(ProbeKind::Syn),
            (proto::TCP, false) => Some(ProbeKind::SynDropped),
            (proto::UDP, true) => Some(ProbeKind::UdpNew),
            (proto::UDP, false) => Some(ProbeKind::UdpDropped),
            _ => None,
        };
        if let Some(kind) = kind {
            let (sp, dp) = f.pkt.ports();
            self.scan_event(f, sp, dp, kind, &mut d);
        }
        if !d.accepted() {
            let answered = d.action.as_ref().map(|a| match a {
                Action::SendRst(_) => AnswerKind::TcpRst,
                Action::SendUnreachable(_) => AnswerKind::IcmpUnreachable,
            });
            if let Some(kind) = answered {
                let (src, dst, p) = (f.pkt.src, f.pkt.dst, f.pkt.proto);
                self.scan_answer(src, dst, p, f.pkt.ports().1, kind, f.now, &mut d.events);
            }
            return d;
        }
        let proto = state();
        let conn_state = match &proto {
            ProtoState::Tcp(t) => ConnState::Tcp(t.state),
            ProtoState::Datagram => ConnState::Unreplied,
        };
        let timeout = match (&proto, f.pkt.proto) {
            (ProtoState::Tcp(t), _) => t.timeout(&self.config.timeouts),
            (_, proto::UDP) => self.config.timeouts.udp_unreplied,
            (_, proto::ICMP | proto::ICMPV6) => self.config.timeouts.icmp,
            _ => self.config.timeouts.generic_unreplied,
        };
        let conn = Conn {
            expires: f.now.tick().after_secs(timeout),
            flags: if from_lo { flags::ORIG_IS_LO } else { 0 },
            proto,
        };
        match self.insert(f.table, key, f.src, conn) {
            Ok(()) => {
                d.state = Some(conn_state);
                d.verdict = Verdict::Accept(Pass::Opened);
                d
            }
            Err(reason) => {
                d.verdict = Verdict::Drop(reason);
                d
            }
        }
    }

    /// Runs the policy on a new connection.
    fn check_policy<A: Addr>(
        &self,
        f: &FlowCtx<'_, A>,
        sport: u16,
        dport: u16,
        icmp: Option<(u8, u8)>,
    ) -> Decision {
        let policy = self.policy.load();
        let q = Query {
            src: f.pkt.src,
            dst: f.pkt.dst,
            proto: f.pkt.proto,
            sport,
            dport,
            icmp_type: icmp.map(|(t, _)| t),
            icmp_code: icmp.map(|(_, c)| c),
            in_iface: f.meta.in_iface,
            out_iface: f.meta.out_iface,
        };
        let outcome = policy.evaluate(&q, f.now);
        let mut d = match outcome.action {
            RuleAction::Allow => Decision::accept(Pass::Stateless, None),
            RuleAction::Drop => Decision::drop(DropReason::PolicyDrop, None),
            RuleAction::Reject => {
                let mut d = Decision::drop(DropReason::PolicyReject, None);
                let answer = match &f.pkt.transport {
                    Transport::Tcp(t) => {
                        rst_answering(f.pkt.src, f.pkt.dst, t).map(Action::SendRst)
                    }
                    _ => unreachable_answering(f.pkt).map(Action::SendUnreachable),
                };
                d.action = answer.filter(|_| self.take_answer(f));
                d
            }
        };
        let log = outcome.rule.filter(|r| r.log);
        if log.is_some() && !self.rule_logs.try_take(f.now) {
            bump(&self.counters.logs_suppressed);
        } else if let Some(rule) = log {
            d.events.push(Event::RuleMatch(RuleMatch {
                rule: Arc::new(rule.clone()),
                action: outcome.action,
                packet: LoggedPacket::of(f.pkt, f.meta),
            }));
        }
        d
    }

    /// ICMP messages that open nothing (router advertisements, timestamps...): the policy
    /// judges each one.
    fn stateless<A: Addr>(&self, f: &FlowCtx<'_, A>) -> Decision {
        let icmp = match &f.pkt.transport {
            Transport::Icmp(h) => Some((h.icmp_type, h.code)),
            _ => None,
        };
        self.check_policy(f, 0, 0, icmp)
    }

    /// ICMP errors: accepted only when the quoted packet belongs to a tracked flow and the
    /// error travels back towards that packet's sender.
    fn related<A: Addr>(&self, f: &FlowCtx<'_, A>, e: &crate::packet::Embedded) -> Decision {
        let (Some(esrc), Some(edst)) = (A::from_ip(e.src), A::from_ip(e.dst)) else {
            return Decision::drop(DropReason::IcmpUnrelated, None);
        };
        if esrc != f.dst {
            return Decision::drop(DropReason::IcmpUnrelated, None);
        }
        let (sport, dport) = match e.proto {
            proto::ICMP | proto::ICMPV6 => (e.sport, e.sport),
            _ => (e.sport, e.dport),
        };
        let (key, _) = Key::new(e.proto, esrc, sport, edst, dport);
        match f.table.peek(&key, f.now.tick()) {
            Some(conn) if !conn.has(flags::REVOKED) => {
                let mut d = Decision::accept(Pass::Related, Some(conn.state()));
                let unreachable = matches!(
                    (&f.pkt.transport, f.pkt.proto),
                    (Transport::Icmp(h), proto::ICMP) if h.icmp_type == 3
                ) || matches!(
                    (&f.pkt.transport, f.pkt.proto),
                    (Transport::Icmp(h), proto::ICMPV6) if h.icmp_type == 1
                );
                if unreachable {
                    let kind = AnswerKind::IcmpUnreachable;
                    let (scanner, target) = (e.src, e.dst);
                    self.scan_answer(
                        scanner,
                        target,
                        e.proto,
                        e.dport,
                        kind,
                        f.now,
                        &mut d.events,
                    );
                }
                d
            }
            _ => Decision::drop(DropReason::IcmpUnrelated, None),
        }
    }

    /// Refreshes an entry after a valid packet.
    fn learned(&self, conn: &mut Conn, dir: Dir, now: Tick, timeout: u32) {
        if dir == Dir::Reply {
            conn.flags |= flags::SEEN_REPLY;
        }
        conn.expires = now.after_secs(timeout);
    }

    /// Inserts a new entry, making room when the table is full.
    fn insert<A: Addr>(
        &self,
        table: &Table<A>,
        key: Key<A>,
        src: A,
        conn: Conn,
    ) -> Result<(), DropReason> {
        let limits = &self.config.limits;
        if self.counts.entries() >= limits.max_entries {
            let evicted = self.v4.early_drop(limits.early_drop_scan, &self.counts)
                || self.v6.early_drop(limits.early_drop_scan, &self.counts);
            if !evicted {
                return Err(DropReason::TableFull);
            }
            bump(&self.counters.early_drops);
        }
        table
            .insert(key, src, conn, limits.per_source_limit(), &self.counts)
            .map_err(|e| match e {
                InsertError::TableFull => DropReason::TableFull,
                InsertError::SourceLimit => DropReason::SourceLimit,
            })
    }

    /// Closes tracked connections that `policy` would not allow today (reload with
    /// `[reload] mode = "recheck"`): every further packet of theirs is dropped (`revoked`) until
    /// the entry expires, at the latest after the CLOSE timeout. Returns how many were closed.
    pub fn recheck(&self, policy: &Policy, now: Timestamp) -> Recheck {
        let tick = now.tick();
        let close = self.config.timeouts.close.max(1);
        let mut revoked = 0;
        let mut actions = Vec::new();
        let mut visit = |proto: u8,
                         (src, sport): (IpAddr, u16),
                         (dst, dport): (IpAddr, u16),
                         conn: &mut Conn| {
            if conn.has(flags::REVOKED) {
                return;
            }
            let icmp = matches!(proto, proto::ICMP | proto::ICMPV6);
            let q = Query {
                src,
                dst,
                proto,
                sport: if icmp { 0 } else { sport },
                dport: if icmp { 0 } else { dport },
                icmp_type: None,
                icmp_code: None,
                in_iface: None,
                out_iface: None,
            };
            let action = policy.evaluate(&q, now).action;
            if action == RuleAction::Allow {
                return;
            }
            conn.flags |= flags::REVOKED;
            conn.expires = conn.expires.min(tick.after_secs(close));
            revoked += 1;
            if let (RuleAction::Reject, ProtoState::Tcp(t)) = (action, &conn.proto) {
                // A RST toward each end, each with the sequence number that end expects next:
                // to the originator as if from the responder, and the other way round.
                let (orig_next, reply_next) = t.next_seqs();
                let rst = |from: (IpAddr, u16), to: (IpAddr, u16), seq: Seq| Rst {
                    src: from.0,
                    dst: to.0,
                    sport: from.1,
                    dport: to.1,
                    seq,
                    ack: None,
                };
                actions.push(Action::SendRst(rst((dst, dport), (src, sport), reply_next)));
                actions.push(Action::SendRst(rst((src, sport), (dst, dport), orig_next)));
            }
        };
        self.v4.for_each_mut(tick, |k, c| {
            let (a, b) = k.endpoints(c.has(flags::ORIG_IS_LO));
            visit(k.proto, a, b, c)
        });
        self.v6.for_each_mut(tick, |k, c| {
            let (a, b) = k.endpoints(c.has(flags::ORIG_IS_LO));
            visit(k.proto, a, b, c)
        });
        Recheck { revoked, actions }
    }

    /// Removes expired entries. Returns how many.
    pub fn sweep(&self, now: Timestamp) -> usize {
        let tick = now.tick();
        let mut alerts = Vec::new();
        let mut closed = |proto: u8, (src, sport): (IpAddr, u16), (dst, dport): (IpAddr, u16)| {
            if let Some(scan) = &self.scan {
                alerts.extend(scan.note_closed(src, dst, proto, sport, dport, now));
            }
        };
        let n = self.v4.sweep(tick, &self.counts, |k, c| {
            let (a, b) = k.endpoints(c.has(flags::ORIG_IS_LO));
            closed(k.proto, a, b)
        }) + self.v6.sweep(tick, &self.counts, |k, c| {
            let (a, b) = k.endpoints(c.has(flags::ORIG_IS_LO));
            closed(k.proto, a, b)
        });
        if !alerts.is_empty() {
            let mut events = Vec::new();
            self.raise(alerts, now, &mut events);
            let mut pending = self
                .pending_alerts
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            pending.extend(events);
        }
        self.counters.expired.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Number of tracked entries.
    pub fn entries(&self) -> usize {
        self.counts.entries()
    }

    /// Counter snapshot.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let drops: Vec<(String, u64)> = DropReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), load(&c.drops[*r as usize])))
            .filter(|(_, n)| *n > 0)
            .collect();
        Stats {
            packets: load(&c.packets),
            accepted: load(&c.accepted),
            dropped: drops.iter().map(|(_, n)| n).sum(),
            ignored: load(&c.ignored),
            new_connections: load(&c.new_conns),
            related: load(&c.related),
            fragments: load(&c.fragments),
            expired: load(&c.expired),
            early_drops: load(&c.early_drops),
            answered: load(&c.answered),
            answers_limited: load(&c.answers_limited),
            logs_suppressed: load(&c.logs_suppressed),
            entries: self.counts.entries() as u64,
            drops,
        }
    }

    /// Drops counted for one reason.
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.counters.drops[reason as usize].load(Ordering::Relaxed)
    }

    /// Live connections per state.
    pub fn state_counts(&self, now: Timestamp) -> StateCounts {
        let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
        let tick = now.tick();
        let mut add = |c: &Conn| *counts.entry(c.state().to_string()).or_default() += 1;
        self.v4.for_each(tick, |_, c| add(c));
        self.v6.for_each(tick, |_, c| add(c));
        counts.into_iter().collect()
    }

    /// Lists live connections matching `filter`.
    pub fn connections(&self, now: Timestamp, filter: impl Fn(&ConnInfo) -> bool) -> Vec<ConnInfo> {
        let tick = now.tick();
        let mut out = Vec::new();
        self.v4
            .for_each(tick, |k, c| push_info(&mut out, k, c, tick, &filter));
        self.v6
            .for_each(tick, |k, c| push_info(&mut out, k, c, tick, &filter));
        out
    }
}

fn push_info<A: Addr>(
    out: &mut Vec<ConnInfo>,
    key: &Key<A>,
    conn: &Conn,
    now: Tick,
    filter: &impl Fn(&ConnInfo) -> bool,
) {
    let ((src, sport), (dst, dport)) = key.endpoints(conn.has(flags::ORIG_IS_LO));
    let info = ConnInfo {
        proto: proto::Name(key.proto).to_string(),
        src,
        dst,
        sport,
        dport,
        state: conn.state().to_string(),
        expires_in: conn.expires.secs_from(now),
        assured: conn.has(flags::ASSURED),
    };
    if filter(&info) {
        out.push(info);
    }
}

/// Formats a TCP flag byte like tcpdump.
pub fn flags_text(f: u8) -> String {
    TcpFlags(f).to_string()
}

/// The per-packet context passed down the protocol handlers.
struct FlowCtx<'a, A: Addr> {
    table: &'a Table<A>,
    src: A,
    dst: A,
    pkt: &'a Packet<'a>,
    meta: &'a PacketMeta<'a>,
    now: Timestamp,
}

#[cfg(test)]
mod tests;
