//! Walks over the whole table, both families: expiry, the listing of `statewall conns`, the
//! count per state, and the recheck of every connection against new rules.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::{flags, flow_of, Addr, Conn, ConnRecord, Conntrack, Counts, Key, ProtoState, RuleTag};
use crate::packet::Seq;
use crate::proto;
use crate::time::{Tick, Timestamp};

/// Connections per state name (`ESTABLISHED`, `UNREPLIED`, ...), in name order.
pub type StateCounts = Vec<(String, u64)>;

/// One connection, as `statewall conns` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
    /// Packets and bytes per direction, as statewall counted them.
    #[serde(flatten)]
    pub counts: Counts,
    /// The rule that admitted it (resolved to `FILE:LINE` by the engine, which knows the rule
    /// sets).
    #[serde(skip)]
    pub rule: RuleTag,
    /// On the kernel fast path: the kernel forwards its middle ([`super::Offload`]).
    pub offloaded: bool,
}

impl Conntrack {
    /// Removes every entry expired at `now`, giving `on_expire` the record of each and
    /// whether it had been revoked (its end was reported then). Returns how many. Locks one
    /// shard at a time.
    pub fn sweep(&self, now: Timestamp, mut on_expire: impl FnMut(&ConnRecord, bool)) -> usize {
        let tick = now.tick();
        let mut expire = |k: &_, c: &Conn, n| {
            on_expire(&ConnRecord::of(k, c, n), c.has(flags::REVOKED));
        };
        let v4 = self.v4.sweep(tick, &self.counts, &mut expire);
        let mut expire = |k: &_, c: &Conn, n| {
            on_expire(&ConnRecord::of(k, c, n), c.has(flags::REVOKED));
        };
        let v6 = self.v6.sweep(tick, &self.counts, &mut expire);
        let n = v4 + v6;
        self.expired.fetch_add(n as u64, Ordering::Relaxed);
        // Early drop's queues forget the entries that are gone or assured since, and the
        // handshakes it evicted those that expired.
        self.v4.prune_candidates();
        self.v6.prune_candidates();
        self.v4.handshakes.forget_expired(tick);
        self.v6.handshakes.forget_expired(tick);
        n
    }

    /// Live connections matching `filter`.
    pub fn connections(&self, now: Timestamp, filter: impl Fn(&ConnInfo) -> bool) -> Vec<ConnInfo> {
        let tick = now.tick();
        let mut out = Vec::new();
        let mut push = |info: ConnInfo| {
            if filter(&info) {
                out.push(info);
            }
        };
        self.v4
            .for_each_counted(tick, |k, c, n| push(info(k, c, n, tick)));
        self.v6
            .for_each_counted(tick, |k, c, n| push(info(k, c, n, tick)));
        out
    }

    /// Live connections per state.
    pub fn state_counts(&self, now: Timestamp) -> StateCounts {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let tick = now.tick();
        let mut add = |c: &Conn| *counts.entry(c.state().to_string()).or_default() += 1;
        self.v4.for_each(tick, |_, c| add(c));
        self.v6.for_each(tick, |_, c| add(c));
        counts.into_iter().collect()
    }

    /// Closes every live connection `revoke` says must go (a rule recheck on reload, a kill):
    /// every further packet of theirs is dropped (`revoked`) until the entry expires, at the
    /// latest after the CLOSE timeout. `revoke` gets each connection's record (flow
    /// originator first, state, rule, counters) and, for TCP, the sequence number each end
    /// sends next (`(originator, responder)`), so that it can answer them. Returns how many
    /// were closed.
    pub fn revoke(
        &self,
        now: Timestamp,
        mut revoke: impl FnMut(&ConnRecord, Option<(Seq, Seq)>) -> bool,
    ) -> u64 {
        let tick = now.tick();
        let until = tick.after_secs(self.timeouts.close.max(1));
        let mut revoked = 0;
        let mut visit = |record: ConnRecord, conn: &mut Conn| {
            if conn.has(flags::REVOKED) {
                return;
            }
            let next = match &conn.proto {
                ProtoState::Tcp(t) => Some(t.next_seqs()),
                ProtoState::Datagram(_) => None,
            };
            if revoke(&record, next) {
                // Off the fast path too: the kernel must hand its packets back to be dropped.
                conn.flags |= flags::REVOKED;
                conn.flags &= !flags::OFFLOADED;
                conn.expires = conn.expires.earlier(until);
                revoked += 1;
            }
        };
        let v4 = &self.v4;
        v4.for_each_mut(tick, |k, c| visit(ConnRecord::of(k, c, v4.counts(k, c)), c));
        let v6 = &self.v6;
        v6.for_each_mut(tick, |k, c| visit(ConnRecord::of(k, c, v6.counts(k, c)), c));
        // What the handshakes evicted from a full table would bring back was admitted by rules
        // or allowed by an operator who may refuse it now: forgotten, their next segment
        // finds no connection (a retransmitted SYN is judged anew).
        self.v4.handshakes.forget_all();
        self.v6.handshakes.forget_all();
        revoked
    }
}

fn info<A: Addr>(key: &Key<A>, conn: &Conn, counts: Counts, now: Tick) -> ConnInfo {
    let flow = flow_of(key, conn);
    ConnInfo {
        proto: proto::Name(key.proto).to_string(),
        src: flow.src,
        dst: flow.dst,
        sport: flow.sport,
        dport: flow.dport,
        state: conn.state().to_string(),
        expires_in: conn.expires.secs_from(now),
        assured: conn.has(flags::ASSURED),
        counts,
        rule: conn.rule,
        offloaded: conn.has(flags::OFFLOADED),
    }
}
