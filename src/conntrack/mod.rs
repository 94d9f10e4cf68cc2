//! Connection tracking: one [`Conntrack`] over both address families, entered by
//! [`Conntrack::track`] for every decoded packet.
//!
//! ```text
//! track(pkt) ─┬─ TCP ─────────── segment::track  state machine + window check   (tcp/)
//!             ├─ UDP, other ──── datagram::track unreplied → replied            (datagram.rs)
//!             ├─ ICMP ────────── icmp::track     echo as a datagram flow; errors
//!             │                                  related to a tracked flow     (icmp.rs)
//!             └─ later fragment ─ passes when its first fragment did      (fragments.rs)
//!        ──► Track: Judged (verdict of a flow) | New / MidStream / Resumed (the engine
//!            decides, then open()) | Stray (TCP segment of no connection) | Stateless (ICMP
//!            that opens nothing)
//! ```
//!
//! A connection is stored once, under a key whose two endpoints are in canonical order (the
//! lower address/port pair first), so both directions of a flow find the same entry. The entry
//! remembers which endpoint opened the connection; a packet's [`Dir`] is relative to that.
//!
//! IPv4 and IPv6 connections live in two tables whose keys are as small as their addresses
//! (14 and 38 bytes): with a million entries the hash table's slots are most of the memory.
//! [`Conntrack`] hides the pair: one entry limit for both, early drop from either, one sweep,
//! one listing. Whole-table walks (expiry, listing, recheck) are in `walk`.

mod datagram;
mod entry;
mod fragments;
mod handshakes;
mod icmp;
mod kernel;
mod key;
mod offload;
mod segment;
mod settings;
mod table;
pub mod tcp;
mod walk;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::mapref::one::RefMut;

pub use entry::{flags, Conn, ConnState, Counts, ProtoState, RuleTag, Tally, Victim};
pub use fragments::{Fragments, FRAGMENT_TTL, MAX_DATAGRAMS};
pub use kernel::{Adoption, AdoptionReport, KernelFlow};
pub use key::{Addr, AnyKey, Dir, Key};
pub use settings::{Limits, Offload, Timeouts};
pub use table::{InsertError, Table, TableCounts};
pub use tcp::{KernelTcp, TcpConn, TcpState};
pub use walk::{ConnInfo, StateCounts};

use crate::packet::{Packet, Transport};
use crate::proto;
use crate::time::{Tick, Timestamp};
use crate::verdict::{DropReason, Flow, Pass, Verdict};

/// The connection table of both families, with its timeouts and limits.
pub struct Conntrack {
    v4: Table<[u8; 4]>,
    v6: Table<[u8; 16]>,
    counts: TableCounts,
    timeouts: Timeouts,
    limits: Limits,
    /// When validated flows go to the kernel fast path.
    offload: Offload,
    /// Entries evicted because the table was full.
    early_drops: AtomicU64,
    /// Evicted handshakes that completed and came back ([`Track::Resumed`]).
    resumed: AtomicU64,
    /// Entries removed by [`Conntrack::sweep`].
    expired: AtomicU64,
    /// Datagrams whose first fragment passed (`fragments`).
    fragments: Fragments,
    /// This gateway stands by ([`Conntrack::follow_kernel`]) until it takes over
    /// ([`Conntrack::take_back`]): the few segments it sees do not settle stale windows.
    standby: std::sync::atomic::AtomicBool,
}

/// What tracking says about a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Track {
    /// Judged by its flow (or by the protocol's rules for a packet that needs none).
    Judged(Tracked),
    /// No flow yet; this packet may open one (a SYN, a first datagram, an echo request). The
    /// caller decides (the rules) and opens it with [`Conntrack::open`].
    New(Opening),
    /// A TCP segment of no connection that an established connection would carry (ACK
    /// without SYN or RST: data, a bare ACK, a FIN/ACK): adoptable after a restart
    /// ([`Conntrack::open`]), otherwise dropped as [`DropReason::NoConnection`].
    MidStream(Opening),
    /// The segment completed a handshake that early drop had evicted from a full table
    /// (`handshakes`): its connection, established, goes back into the table
    /// ([`Conntrack::open`]), admitted by the rule that admitted its SYN.
    Resumed(Opening),
    /// A TCP segment of no connection that opens none (FIN, RST, SYN/ACK, invalid flags...):
    /// dropped for this reason.
    Stray(DropReason),
    /// An ICMP message that opens no flow (router advertisements, timestamps...): judged by
    /// the rules alone.
    Stateless,
}

/// The verdict of a flow on one of its packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracked {
    /// Passed (and how) or dropped (and why).
    pub verdict: Verdict,
    /// The flow's state after the packet, when it belongs to one.
    pub state: Option<ConnState>,
    /// A step in the flow's life the scan detector wants to know about.
    pub milestone: Option<Milestone>,
    /// The flow (originator first) when this is the first packet of a flow adopted from the
    /// kernel table: the engine checks it against the rules in force.
    pub adopted: Option<Flow>,
    /// The flow is on the kernel fast path after this packet (its accept verdict carries the
    /// FASTPATH bit).
    pub offloaded: bool,
}

impl Tracked {
    fn pass(pass: Pass, state: Option<ConnState>) -> Tracked {
        Tracked {
            verdict: Verdict::Accept(pass),
            state,
            milestone: None,
            adopted: None,
            offloaded: false,
        }
    }

    fn drop(reason: DropReason, state: Option<ConnState>) -> Tracked {
        Tracked {
            verdict: Verdict::Drop(reason),
            state,
            milestone: None,
            adopted: None,
            offloaded: false,
        }
    }
}

/// A step in a flow's life, with the flow (originator first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Milestone {
    /// The first reply: a SYN/ACK answering the opener's SYN, a flow's first datagram back.
    Replied(Flow),
    /// The connection is assured: its TCP handshake completed, or a connection adopted
    /// mid-stream saw its other direction.
    Established(Flow),
    /// The responder refused the TCP handshake with a RST.
    Refused(Flow),
    /// An ICMP unreachable about this flow (the quoted packet's flow) was passed.
    Unreachable(Flow),
}

/// A flow a packet would open: its key and its first entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opening {
    key: AnyKey,
    conn: Conn,
    /// When the packet came.
    now: Tick,
}

impl Opening {
    /// The state the flow opens in.
    pub fn state(&self) -> ConnState {
        self.conn.state()
    }

    /// The same flow opened by the other end: a segment adopted mid-stream whose connection
    /// its receiver opened (the originator is the one the rules allow).
    pub fn reversed(mut self) -> Opening {
        self.conn.flags ^= flags::ORIG_IS_LO;
        if let ProtoState::Tcp(t) = &mut self.conn.proto {
            t.reverse();
        }
        self
    }

    /// Records the rule that admits the flow.
    pub fn admitted_by(&mut self, rule: RuleTag) {
        self.conn.rule = rule;
    }

    /// The rule that admitted the flow (a resumed one: the rule that admitted its SYN).
    pub fn rule(&self) -> RuleTag {
        self.conn.rule
    }

    /// The flow, originator first.
    pub fn flow(&self) -> Flow {
        match &self.key {
            AnyKey::V4(k) => flow_of(k, &self.conn),
            AnyKey::V6(k) => flow_of(k, &self.conn),
        }
    }
}

/// A connection as it was when it left the table (or was revoked): what a "destroy" event
/// reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnRecord {
    /// The flow, originator first.
    pub flow: Flow,
    /// Its last state.
    pub state: ConnState,
    /// The rule that admitted it.
    pub rule: RuleTag,
    /// Its packets and bytes per direction.
    pub counts: Counts,
}

impl ConnRecord {
    fn of<A: Addr>(key: &Key<A>, conn: &Conn, counts: Counts) -> ConnRecord {
        ConnRecord {
            flow: flow_of(key, conn),
            state: conn.state(),
            rule: conn.rule,
            counts,
        }
    }

    /// The record of an entry evicted to make room.
    fn evicted<A: Addr>((key, conn, counts): table::Evicted<A>) -> ConnRecord {
        ConnRecord::of(&key, &conn, counts)
    }
}

/// A flow [`Conntrack::open`] opened, and the entries that made room for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The state it opened in.
    pub state: ConnState,
    /// An unassured entry evicted because the table was full.
    pub evicted: Option<ConnRecord>,
    /// The entry it replaced on its tuple (a closed connection reopened by a new SYN).
    pub replaced: Option<ConnRecord>,
}

/// What the kernel's connection mark said of a packet's flow (statewall's bits, restored into
/// the packet mark before the queue; all false without kernel conntrack).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Via {
    /// FASTPATH: the kernel had the flow on the fast path and may have carried packets of it
    /// that statewall never saw, so a TCP connection statewall holds on the fast path learns
    /// its windows anew from this packet ([`TcpConn::resume`]) and leaves the fast path until
    /// validated again.
    pub fastpath: bool,
    /// ADMITTED: the kernel holds the flow as one statewall admitted and found the packet
    /// valid (an INVALID packet comes without its connection's mark). A RST of a flow
    /// statewall does not hold is adoptable then ([`Track::MidStream`]): after a restart, the
    /// first segment of a connection the kernel carried meanwhile may be its RST.
    pub admitted: bool,
}

/// Totals of the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableTotals {
    /// Entries in the table.
    pub entries: u64,
    /// Entries evicted because the table was full.
    pub early_drops: u64,
    /// Evicted handshakes that completed and came back.
    pub resumed: u64,
    /// Entries expired.
    pub expired: u64,
}

impl Conntrack {
    /// An empty table.
    pub fn new(timeouts: Timeouts, limits: Limits) -> Conntrack {
        Conntrack {
            v4: Table::for_limits(&limits),
            v6: Table::for_limits(&limits),
            counts: TableCounts::default(),
            timeouts,
            limits,
            offload: Offload::OFF,
            early_drops: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            fragments: Fragments::default(),
            standby: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The same table, offloading validated flows to the kernel fast path as `offload` says.
    pub fn with_offload(mut self, offload: Offload) -> Conntrack {
        self.offload = offload;
        self
    }

    /// Tracks one decoded packet: the one entry, whatever its protocol.
    pub fn track(&self, pkt: &Packet<'_>, now: Timestamp) -> Track {
        self.track_via(pkt, Via::default(), now)
    }

    /// Tracks one decoded packet with what the kernel's connection mark said of its flow
    /// ([`Via`]).
    #[inline(always)]
    pub fn track_via(&self, pkt: &Packet<'_>, via: Via, now: Timestamp) -> Track {
        match (pkt.src, pkt.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => self
                .side(&self.v4, s.octets(), d.octets(), via, now, pkt.len)
                .track(pkt),
            (IpAddr::V6(s), IpAddr::V6(d)) => self
                .side(&self.v6, s.octets(), d.octets(), via, now, pkt.len)
                .track(pkt),
            _ => Track::Judged(Tracked::drop(DropReason::MalformedIp, None)),
        }
    }

    fn side<'c, A: Addr>(
        &'c self,
        table: &'c Table<A>,
        src: A,
        dst: A,
        via: Via,
        now: Timestamp,
        len: usize,
    ) -> Side<'c, A> {
        Side {
            ct: self,
            table,
            src,
            dst,
            via,
            now: now.tick(),
            len: u32::try_from(len).unwrap_or(u32::MAX),
        }
    }

    /// Opens the flow of a [`Track::New`], [`Track::MidStream`] or [`Track::Resumed`] packet,
    /// evicting an entry first when the table is full (`early_drop`: the oldest unassured or
    /// closing one). Returns the state it opened in and the entries that left for it.
    pub fn open(&self, opening: Opening) -> Result<Opened, DropReason> {
        let mut evicted = None;
        if self.counts.entries() >= self.limits.max_entries {
            evicted = self.early_drop(opening.now);
            if evicted.is_none() {
                return Err(DropReason::TableFull);
            }
            self.early_drops.fetch_add(1, Ordering::Relaxed);
        }
        let state = opening.state();
        let limit = self.limits.per_source_limit();
        let cap = (opening.now, self.limits.candidate_cap());
        let inserted = match opening.key {
            AnyKey::V4(key) => insert(&self.v4, key, opening.conn, limit, cap, &self.counts)
                .map(|old| old.map(|(c, n)| ConnRecord::of(&key, &c, n))),
            AnyKey::V6(key) => insert(&self.v6, key, opening.conn, limit, cap, &self.counts)
                .map(|old| old.map(|(c, n)| ConnRecord::of(&key, &c, n))),
        };
        inserted
            .map(|replaced| Opened {
                state,
                evicted,
                replaced,
            })
            .map_err(|e| match e {
                InsertError::TableFull => DropReason::TableFull,
                InsertError::SourceLimit => DropReason::SourceLimit,
            })
    }

    /// Brings back the connection of a [`Track::Resumed`] packet (as [`Conntrack::open`]).
    pub fn resume(&self, opening: Opening) -> Result<Opened, DropReason> {
        let opened = self.open(opening)?;
        self.resumed.fetch_add(1, Ordering::Relaxed);
        Ok(opened)
    }

    /// The first fragment of a datagram passed at `now`: its later fragments may follow
    /// (`fragments`). Call it for every passed packet that is a first fragment.
    pub fn first_fragment_passed(&self, pkt: &Packet<'_>, now: Timestamp) {
        let Some(frag) = pkt.frag.filter(|f| f.is_first() && f.more) else {
            return;
        };
        let tcp = match (&pkt.transport, pkt.src, pkt.dst) {
            (Transport::Tcp(t), IpAddr::V4(s), IpAddr::V4(d)) => {
                let (key, from_lo) = Key::new(proto::TCP, s.octets(), t.sport, d.octets(), t.dport);
                Some((AnyKey::V4(key), from_lo, t))
            }
            (Transport::Tcp(t), IpAddr::V6(s), IpAddr::V6(d)) => {
                let (key, from_lo) = Key::new(proto::TCP, s.octets(), t.sport, d.octets(), t.dport);
                Some((AnyKey::V6(key), from_lo, t))
            }
            _ => None,
        };
        let transport_len = pkt.len.saturating_sub(pkt.header_len);
        let tcp = tcp.map(|(key, from_lo, t)| fragments::TcpPart {
            key,
            from_lo,
            seq: t.seq,
            header: u32::try_from(transport_len)
                .unwrap_or(u32::MAX)
                .saturating_sub(t.payload_len),
        });
        let id = fragments::DatagramId {
            src: pkt.src,
            dst: pkt.dst,
            proto: pkt.proto,
            id: frag.id,
        };
        self.fragments.admit(id, tcp, now.tick());
    }

    /// Datagrams whose later fragments may pass (at most [`MAX_DATAGRAMS`]).
    pub fn fragment_datagrams(&self) -> usize {
        self.fragments.len()
    }

    /// Makes room for one entry, as Linux's early drop and its full-table garbage collection
    /// do: evicts the entry of either family that became evictable first (unassured flows, TCP
    /// connections closing or closed: [`Conn::victim`]) and still is, the first victims before
    /// the others: for each class, up to `early_drop_scan` of its candidates, then, for
    /// candidates its bounded queues lost, the one expiring first among `early_drop_scan`
    /// entries of each table. Returns the entry evicted; an evicted handshake is remembered
    /// until it completes (`handshakes`).
    fn early_drop(&self, now: Tick) -> Option<ConnRecord> {
        let scan = self.limits.early_drop_scan;
        for victim in Victim::ORDER {
            for _ in 0..scan {
                let v4_first = match (
                    self.v4.oldest_candidate(victim),
                    self.v6.oldest_candidate(victim),
                ) {
                    (None, None) => break,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (Some(a), Some(b)) => !a.is_after(b),
                };
                let evicted = if v4_first {
                    self.v4
                        .evict_oldest(victim, now, &self.counts)
                        .map(|e| e.map(ConnRecord::evicted))
                } else {
                    self.v6
                        .evict_oldest(victim, now, &self.counts)
                        .map(|e| e.map(ConnRecord::evicted))
                };
                if let Some(Some(r)) = evicted {
                    return Some(r);
                }
            }
            // The queue lost them (bounded, or being pruned by the sweep this moment): look in
            // the tables before taking a victim of the next class.
            let scanned = self
                .v4
                .evict_scanned(victim, scan, now, &self.counts)
                .map(ConnRecord::evicted)
                .or_else(|| {
                    self.v6
                        .evict_scanned(victim, scan, now, &self.counts)
                        .map(ConnRecord::evicted)
                });
            if scanned.is_some() {
                return scanned;
            }
        }
        None
    }

    /// Number of tracked entries (both families).
    pub fn entries(&self) -> usize {
        self.counts.entries()
    }

    /// The table's totals.
    pub fn totals(&self) -> TableTotals {
        TableTotals {
            entries: self.counts.entries() as u64,
            early_drops: self.early_drops.load(Ordering::Relaxed),
            resumed: self.resumed.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
        }
    }

    /// Entries per family: (IPv4, IPv6). Locks each shard in turn (for the metrics).
    pub fn family_entries(&self) -> (u64, u64) {
        (self.v4.len() as u64, self.v6.len() as u64)
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }
}

fn insert<A: Addr>(
    table: &Table<A>,
    key: Key<A>,
    conn: Conn,
    limit: usize,
    (now, cap): (Tick, usize),
    counts: &TableCounts,
) -> Result<Option<(Conn, Counts)>, InsertError> {
    let origin = if conn.has(flags::ORIG_IS_LO) {
        key.lo
    } else {
        key.hi
    };
    let replaced = table.insert(key, origin, conn, limit, counts)?;
    // What was remembered of an earlier handshake on the tuple is not this flow's.
    table.handshakes.forget(&key);
    if let Some(victim) = conn.victim() {
        table.note_candidate(key, victim, now, cap);
    }
    Ok(replaced)
}

/// One packet's view of the table: its family's table and its addresses in that family.
struct Side<'c, A: Addr> {
    ct: &'c Conntrack,
    table: &'c Table<A>,
    src: A,
    dst: A,
    /// What the kernel's connection mark said ([`Conntrack::track_via`]).
    via: Via,
    now: Tick,
    /// The packet's IP length, for the counters.
    len: u32,
}

impl<A: Addr> Side<'_, A> {
    /// Dispatches to the protocol's tracker.
    #[inline(always)]
    fn track(&self, pkt: &Packet<'_>) -> Track {
        let t = &self.ct.timeouts;
        match &pkt.transport {
            Transport::Tcp(tcp) => segment::track(self, tcp),
            Transport::Udp { sport, dport } => {
                let timeouts = (t.udp_unreplied, t.udp_replied);
                datagram::track(self, proto::UDP, (*sport, *dport), true, timeouts)
            }
            Transport::Icmp(icmp) => icmp::track(self, pkt.proto, icmp),
            Transport::Fragment => Track::Judged(self.later_fragment(pkt)),
            Transport::Other => {
                let timeouts = (t.generic_unreplied, t.generic_replied);
                datagram::track(self, pkt.proto, (0, 0), true, timeouts)
            }
        }
    }

    /// A later fragment: passes only when its datagram's first fragment did; a TCP segment's
    /// fragment extends the sender's end.
    fn later_fragment(&self, pkt: &Packet<'_>) -> Tracked {
        let Some(frag) = pkt.frag else {
            return Tracked::drop(DropReason::FragmentOrphan, None);
        };
        let id = fragments::DatagramId {
            src: pkt.src,
            dst: pkt.dst,
            proto: pkt.proto,
            id: frag.id,
        };
        let Some(tcp) = self.ct.fragments.later(&id, self.now) else {
            return Tracked::drop(DropReason::FragmentOrphan, None);
        };
        let mut state = None;
        if let Some((tcp, key)) = tcp.and_then(|t| A::unwrap(t.key).map(|k| (t, k))) {
            if let Some(mut conn) = self.live(&key) {
                let dir = conn.dir(tcp.from_lo);
                let data_end = frag.data_end(pkt.len.saturating_sub(pkt.header_len));
                let payload = u32::try_from(data_end)
                    .unwrap_or(u32::MAX)
                    .saturating_sub(tcp.header);
                if let ProtoState::Tcp(t) = &mut conn.proto {
                    t.extend_sent(dir, tcp.seq + payload);
                }
                state = Some(conn.state());
            }
        }
        Tracked::pass(Pass::Fragment, state)
    }

    /// The key of this packet's flow, and whether the packet comes from its low endpoint.
    fn key(&self, proto: u8, (sport, dport): (u16, u16)) -> (Key<A>, bool) {
        Key::new(proto, self.src, sport, self.dst, dport)
    }

    /// The live entry under `key`, locked for update.
    #[inline]
    fn live(&self, key: &Key<A>) -> Option<RefMut<'_, Key<A>, Conn>> {
        self.table.get_live(key, self.now, &self.ct.counts)
    }

    /// A copy of the live entry under `key`.
    fn peek(&self, key: &Key<A>) -> Option<Conn> {
        self.table.peek(key, self.now)
    }

    /// Counts the packet on the entry `conn` under `key` (held), in direction `dir`.
    #[inline(always)]
    fn account(&self, key: &Key<A>, conn: &mut Conn, dir: Dir) {
        self.table.account(key, conn, dir, self.len);
    }

    /// A flow to open under `key`, first seen from its low endpoint or not.
    fn opening(
        &self,
        key: Key<A>,
        from_lo: bool,
        extra_flags: u8,
        proto: ProtoState,
        timeout: u32,
    ) -> Opening {
        let orig = if from_lo { flags::ORIG_IS_LO } else { 0 };
        let mut tally = Tally::default();
        tally.add(Dir::Original, self.len);
        Opening {
            key: A::wrap(key),
            conn: Conn {
                expires: self.now.after_secs(timeout),
                flags: orig | extra_flags,
                rule: RuleTag::default(),
                proto,
                tally,
            },
            now: self.now,
        }
    }
}

/// The flow of the entry `conn` under `key`, originator first.
fn flow_of<A: Addr>(key: &Key<A>, conn: &Conn) -> Flow {
    let ((src, sport), (dst, dport)) = key.endpoints(conn.has(flags::ORIG_IS_LO));
    Flow {
        proto: key.proto,
        src,
        dst,
        sport,
        dport,
    }
}

#[cfg(test)]
mod tests;
