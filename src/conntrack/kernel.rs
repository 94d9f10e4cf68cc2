//! Flows adopted from the kernel's conntrack table ([`crate::adopt`]): entered, refreshed and
//! removed as the kernel's entries come, change and go, until a packet uses them; and the
//! opposite move, every entry back to following the kernel when this gateway stops handling
//! traffic.

use std::net::IpAddr;

use super::{flags, flow_of, insert, Addr, Conn, Conntrack, KernelTcp, Key, ProtoState, TcpConn};
use crate::proto;
use crate::time::{Tick, Timestamp};
use crate::verdict::Flow;

/// One flow of the kernel table with the ADMITTED bit, as statewall's hook sees it: under NAT
/// the originator is the original tuple's source and the responder the reply tuple's source
/// (statewall's chain in the filter table sees packets after DNAT and before SNAT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelFlow {
    /// IP protocol number.
    pub proto: u8,
    /// The endpoint that sent the first packet: address and port (the echo identifier for
    /// ICMP echo, 0 for protocols without ports).
    pub orig: (IpAddr, u16),
    /// The other endpoint.
    pub resp: (IpAddr, u16),
    /// TCP: what the kernel's TCP tracker knows.
    pub tcp: Option<KernelTcp>,
    /// Packets were seen both ways.
    pub seen_reply: bool,
    /// The kernel assured the flow (TCP handshake done, or a UDP stream).
    pub assured: bool,
    /// Seconds until the kernel's entry expires, when it says.
    pub timeout: Option<u32>,
}

/// What adopting one flow did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// A new entry.
    Adopted,
    /// An entry adopted earlier and not used since was brought up to date.
    Refreshed,
    /// statewall tracks the flow already (its own entry stays as it is).
    Known,
    /// The table has no room (table or per-source limit).
    NoRoom,
    /// Not a flow statewall can track (a TCP flow without its TCP state, mixed families).
    Unsupported,
}

/// Totals of one adoption pass (a dump of the kernel table).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdoptionReport {
    /// Entries the kernel reported with the ADMITTED bit.
    pub seen: u64,
    /// New entries.
    pub adopted: u64,
    /// Earlier adoptions brought up to date.
    pub refreshed: u64,
    /// Already tracked by statewall.
    pub known: u64,
    /// No room in the table.
    pub no_room: u64,
    /// Entries statewall cannot adopt (a protocol state it does not track).
    pub skipped: u64,
}

impl AdoptionReport {
    /// Counts one outcome.
    pub fn count(&mut self, a: Adoption) {
        match a {
            Adoption::Adopted => self.adopted += 1,
            Adoption::Refreshed => self.refreshed += 1,
            Adoption::Known => self.known += 1,
            Adoption::NoRoom => self.no_room += 1,
            Adoption::Unsupported => self.skipped += 1,
        }
    }
}

impl std::fmt::Display for AdoptionReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seen={} adopted={} refreshed={} known={} no_room={} skipped={}",
            self.seen, self.adopted, self.refreshed, self.known, self.no_room, self.skipped
        )
    }
}

/// A packet used an entry: if it was adopted from the kernel and not used since, it is the
/// flow's own now, and the engine checks this first packet against the rules (the flow
/// returned, for [`super::Tracked::adopted`]). Called where the `Tracked` is built, so that it is
/// built once.
#[inline]
pub(super) fn claim<A: Addr>(key: &Key<A>, conn: &mut Conn) -> Option<Flow> {
    if conn.has(flags::KERNEL) {
        conn.flags &= !flags::KERNEL;
        return Some(flow_of(key, conn));
    }
    None
}

impl Conntrack {
    /// Adopts `flow` from the kernel table: a new entry, or an earlier adoption no packet has
    /// used since brought up to date; an entry statewall tracks itself stays as it is. Its
    /// timeout is the kernel's remaining one, at most statewall's for the state.
    pub fn adopt(&self, flow: &KernelFlow, now: Timestamp) -> Adoption {
        match (flow.orig.0, flow.resp.0) {
            (IpAddr::V4(o), IpAddr::V4(r)) => {
                self.adopt_in(&self.v4, flow, o.octets(), r.octets(), now)
            }
            (IpAddr::V6(o), IpAddr::V6(r)) => {
                self.adopt_in(&self.v6, flow, o.octets(), r.octets(), now)
            }
            _ => Adoption::Unsupported,
        }
    }

    fn adopt_in<A: Addr>(
        &self,
        table: &super::Table<A>,
        flow: &KernelFlow,
        orig: A,
        resp: A,
        now: Timestamp,
    ) -> Adoption {
        let tick = now.tick();
        let (key, from_lo) = Key::new(flow.proto, orig, flow.orig.1, resp, flow.resp.1);
        let proto = match (flow.proto, &flow.tcp) {
            (proto::TCP, Some(k)) => ProtoState::Tcp(TcpConn::adopted(k)),
            (proto::TCP, None) => return Adoption::Unsupported,
            _ => ProtoState::Datagram(tick),
        };
        if let Some(mut entry) = table.get_live(&key, tick, &self.counts) {
            let conn = entry.value_mut();
            if !conn.has(flags::KERNEL) {
                return Adoption::Known;
            }
            if let (ProtoState::Tcp(tc), Some(k)) = (&mut conn.proto, &flow.tcp) {
                tc.refresh(k);
            }
            conn.flags |= status_flags(flow);
            conn.expires = self.expiry(flow, conn, tick);
            drop(entry);
            return Adoption::Refreshed;
        }
        let orig_flag = if from_lo { flags::ORIG_IS_LO } else { 0 };
        let mut conn = Conn {
            expires: tick,
            flags: orig_flag | status_flags(flow) | flags::KERNEL,
            rule: Default::default(),
            proto,
            tally: Default::default(),
        };
        conn.expires = self.expiry(flow, &conn, tick);
        if self.counts.entries() >= self.limits.max_entries {
            // The evicted entry goes unreported: adoption runs outside a packet's way, where
            // nothing collects events.
            if self.early_drop(tick).is_none() {
                return Adoption::NoRoom;
            }
            self.early_drops
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        match insert(
            table,
            key,
            conn,
            self.limits.per_source_limit(),
            (tick, self.limits.candidate_cap()),
            &self.counts,
        ) {
            Ok(_) => Adoption::Adopted,
            Err(_) => Adoption::NoRoom,
        }
    }

    /// When an adopted entry expires: the kernel's remaining timeout, at most statewall's own
    /// for the state, at least one second.
    fn expiry(&self, flow: &KernelFlow, conn: &Conn, now: Tick) -> Tick {
        let t = &self.timeouts;
        let ours = match (&conn.proto, flow.proto) {
            (ProtoState::Tcp(tc), _) => tc.timeout(t),
            (ProtoState::Datagram(_), proto::UDP) if flow.seen_reply => t.udp_replied,
            (ProtoState::Datagram(_), proto::UDP) => t.udp_unreplied,
            (ProtoState::Datagram(_), proto::ICMP | proto::ICMPV6) => t.icmp,
            (ProtoState::Datagram(_), _) if flow.seen_reply => t.generic_replied,
            (ProtoState::Datagram(_), _) => t.generic_unreplied,
        };
        now.after_secs(flow.timeout.map_or(ours, |k| k.min(ours)).max(1))
    }

    /// Removes the entry of `flow` if it was adopted from the kernel and no packet has used it
    /// since (the kernel's entry is gone: destroyed, expired, or replicated away). Returns
    /// whether it was removed.
    pub fn forget(&self, flow: &KernelFlow) -> bool {
        match (flow.orig.0, flow.resp.0) {
            (IpAddr::V4(o), IpAddr::V4(r)) => {
                self.forget_in(&self.v4, flow, o.octets(), r.octets())
            }
            (IpAddr::V6(o), IpAddr::V6(r)) => {
                self.forget_in(&self.v6, flow, o.octets(), r.octets())
            }
            _ => false,
        }
    }

    fn forget_in<A: Addr>(&self, table: &super::Table<A>, flow: &KernelFlow, o: A, r: A) -> bool {
        let (key, _) = Key::new(flow.proto, o, flow.orig.1, r, flow.resp.1);
        table
            .remove_if(&key, |c| c.has(flags::KERNEL), &self.counts)
            .is_some()
    }

    /// Every live entry follows the kernel again, as if just adopted: this gateway stops
    /// handling traffic (the peer does), so the peer's updates, replicated into the kernel
    /// table, are what is true of the flows from now on; what statewall knew of the TCP
    /// windows becomes lower bounds, moved up by the next segments ([`TcpConn::go_stale`]), so
    /// that the segments still in flight when the address moves pass. Returns how many
    /// entries.
    pub fn follow_kernel(&self, now: Timestamp) -> u64 {
        self.standby
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.lose_sight(now, flags::KERNEL)
    }

    /// This gateway takes over from the peer, which carried the flows: what it knows of their
    /// TCP windows is stale ([`TcpConn::go_stale`]), and they settle again from the segments it
    /// forwards from now on. Returns how many entries.
    pub fn take_back(&self, now: Timestamp) -> u64 {
        self.standby
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.lose_sight(now, 0)
    }

    fn lose_sight(&self, now: Timestamp, set: u8) -> u64 {
        let tick = now.tick();
        let mut n = 0;
        let mut visit = |c: &mut Conn| {
            c.flags |= set;
            if let ProtoState::Tcp(tc) = &mut c.proto {
                tc.go_stale();
            }
            n += 1;
        };
        self.v4.for_each_mut(tick, |_, c| visit(c));
        self.v6.for_each_mut(tick, |_, c| visit(c));
        n
    }

    /// Closes the connection of `flow` (originator first) like a rule recheck does: every
    /// further packet is dropped as `revoked` until the entry expires.
    pub fn revoke_flow(&self, flow: &Flow, now: Timestamp) -> bool {
        match (flow.src, flow.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                self.revoke_in(&self.v4, flow, s.octets(), d.octets(), now)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                self.revoke_in(&self.v6, flow, s.octets(), d.octets(), now)
            }
            _ => false,
        }
    }

    fn revoke_in<A: Addr>(
        &self,
        table: &super::Table<A>,
        flow: &Flow,
        src: A,
        dst: A,
        now: Timestamp,
    ) -> bool {
        let tick = now.tick();
        let (key, _) = Key::new(flow.proto, src, flow.sport, dst, flow.dport);
        let Some(mut entry) = table.get_live(&key, tick, &self.counts) else {
            return false;
        };
        let conn = entry.value_mut();
        conn.flags |= flags::REVOKED;
        conn.expires = conn
            .expires
            .earlier(tick.after_secs(self.timeouts.close.max(1)));
        true
    }
}

/// The entry flags a kernel flow's status gives.
fn status_flags(flow: &KernelFlow) -> u8 {
    let mut f = 0;
    if flow.seen_reply {
        f |= flags::SEEN_REPLY;
    }
    if flow.assured {
        f |= flags::ASSURED;
    }
    f
}
