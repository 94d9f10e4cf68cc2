//! Connection tracking: one [`Conntrack`] over both address families, entered by
//! [`Conntrack::track`] for every decoded packet.
//!
//! ```text
//! track(pkt) ─┬─ TCP ─────────── segment::track  state machine + window check   (tcp/)
//!             ├─ UDP, other ──── datagram::track unreplied → replied            (datagram.rs)
//!             ├─ ICMP ────────── icmp::track     echo as a datagram flow; errors
//!             │                                  related to a tracked flow     (icmp.rs)
//!             └─ fragment ────── passes untracked
//!        ──► Track: Judged (verdict of a flow) | New / MidStream (the engine decides, then
//!            open()) | Stray (TCP segment of no connection) | Stateless (ICMP that opens nothing)
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
mod icmp;
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

pub use entry::{flags, Conn, ConnState, ProtoState};
pub use key::{Addr, AnyKey, Dir, Key};
pub use settings::{Limits, Offload, Timeouts};
pub use table::{InsertError, Table, TableCounts};
pub use tcp::{TcpConn, TcpState};
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
    /// Entries removed by [`Conntrack::sweep`].
    expired: AtomicU64,
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
            offloaded: false,
        }
    }

    fn drop(reason: DropReason, state: Option<ConnState>) -> Tracked {
        Tracked {
            verdict: Verdict::Drop(reason),
            state,
            milestone: None,
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
    /// Entries expired.
    pub expired: u64,
}

impl Conntrack {
    /// An empty table.
    pub fn new(timeouts: Timeouts, limits: Limits) -> Conntrack {
        Conntrack {
            v4: Table::new(),
            v6: Table::new(),
            counts: TableCounts::default(),
            timeouts,
            limits,
            offload: Offload::OFF,
            early_drops: AtomicU64::new(0),
            expired: AtomicU64::new(0),
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
    pub fn track_via(&self, pkt: &Packet<'_>, via: Via, now: Timestamp) -> Track {
        match (pkt.src, pkt.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => self
                .side(&self.v4, s.octets(), d.octets(), via, now)
                .track(pkt),
            (IpAddr::V6(s), IpAddr::V6(d)) => self
                .side(&self.v6, s.octets(), d.octets(), via, now)
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
    ) -> Side<'c, A> {
        Side {
            ct: self,
            table,
            src,
            dst,
            via,
            now: now.tick(),
        }
    }

    /// Opens the flow of a [`Track::New`] or [`Track::MidStream`] packet, evicting an
    /// unassured entry first when the table is full (the oldest of a few, as Linux does).
    /// Returns the state it opened in.
    pub fn open(&self, opening: Opening) -> Result<ConnState, DropReason> {
        if self.counts.entries() >= self.limits.max_entries {
            let scan = self.limits.early_drop_scan;
            let now = opening.now;
            let evicted = self.v4.early_drop(scan, now, &self.counts)
                || self.v6.early_drop(scan, now, &self.counts);
            if !evicted {
                return Err(DropReason::TableFull);
            }
            self.early_drops.fetch_add(1, Ordering::Relaxed);
        }
        let state = opening.state();
        let limit = self.limits.per_source_limit();
        let inserted = match opening.key {
            AnyKey::V4(key) => insert(&self.v4, key, opening.conn, limit, &self.counts),
            AnyKey::V6(key) => insert(&self.v6, key, opening.conn, limit, &self.counts),
        };
        inserted.map(|()| state).map_err(|e| match e {
            InsertError::TableFull => DropReason::TableFull,
            InsertError::SourceLimit => DropReason::SourceLimit,
        })
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
            expired: self.expired.load(Ordering::Relaxed),
        }
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
    counts: &TableCounts,
) -> Result<(), InsertError> {
    let origin = if conn.has(flags::ORIG_IS_LO) {
        key.lo
    } else {
        key.hi
    };
    table.insert(key, origin, conn, limit, counts)
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
}

impl<A: Addr> Side<'_, A> {
    /// Dispatches to the protocol's tracker.
    fn track(&self, pkt: &Packet<'_>) -> Track {
        let t = &self.ct.timeouts;
        match &pkt.transport {
            Transport::Tcp(tcp) => segment::track(self, tcp),
            Transport::Udp { sport, dport } => {
                let timeouts = (t.udp_unreplied, t.udp_replied);
                datagram::track(self, proto::UDP, (*sport, *dport), true, timeouts)
            }
            Transport::Icmp(icmp) => icmp::track(self, pkt.proto, icmp),
            Transport::Fragment => Track::Judged(Tracked::pass(Pass::Fragment, None)),
            Transport::Other => {
                let timeouts = (t.generic_unreplied, t.generic_replied);
                datagram::track(self, pkt.proto, (0, 0), true, timeouts)
            }
        }
    }

    /// The key of this packet's flow, and whether the packet comes from its low endpoint.
    fn key(&self, proto: u8, (sport, dport): (u16, u16)) -> (Key<A>, bool) {
        Key::new(proto, self.src, sport, self.dst, dport)
    }

    /// The live entry under `key`, locked for update.
    fn live(&self, key: &Key<A>) -> Option<RefMut<'_, Key<A>, Conn>> {
        self.table.get_live(key, self.now, &self.ct.counts)
    }

    /// A copy of the live entry under `key`.
    fn peek(&self, key: &Key<A>) -> Option<Conn> {
        self.table.peek(key, self.now)
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
        Opening {
            key: A::wrap(key),
            conn: Conn {
                expires: self.now.after_secs(timeout),
                flags: orig | extra_flags,
                proto,
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
