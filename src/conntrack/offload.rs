//! The table's side of the kernel fast path ([`super::Offload`]): the kernel forwards the
//! middle of offloaded flows without statewall, so their entries are kept alive from the
//! kernel's table instead of from their packets, and a flow statewall no longer holds on the
//! fast path is handed back (`crate::io::offload` clears its FASTPATH bit).

use std::net::IpAddr;

use super::{flags, Addr, Conn, Conntrack, Key, ProtoState, Table};
use crate::proto;
use crate::time::Timestamp;

impl Conntrack {
    /// The kernel still carries the flow `proto` from `orig` to `resp` (originator first) on
    /// the fast path: whether statewall holds it there too (a live entry, offloaded, not
    /// revoked). If it does, its entry is refreshed as if a packet had passed, so that it does
    /// not expire while the kernel forwards the flow.
    pub fn keep_offloaded(
        &self,
        proto: u8,
        orig: (IpAddr, u16),
        resp: (IpAddr, u16),
        now: Timestamp,
    ) -> bool {
        match (orig.0, resp.0) {
            (IpAddr::V4(o), IpAddr::V4(r)) => self.keep_in(
                &self.v4,
                proto,
                (o.octets(), orig.1),
                (r.octets(), resp.1),
                now,
            ),
            (IpAddr::V6(o), IpAddr::V6(r)) => self.keep_in(
                &self.v6,
                proto,
                (o.octets(), orig.1),
                (r.octets(), resp.1),
                now,
            ),
            _ => false,
        }
    }

    fn keep_in<A: Addr>(
        &self,
        table: &Table<A>,
        proto: u8,
        (orig, oport): (A, u16),
        (resp, rport): (A, u16),
        now: Timestamp,
    ) -> bool {
        let tick = now.tick();
        let (key, _) = Key::new(proto, orig, oport, resp, rport);
        let Some(mut entry) = table.get_live(&key, tick, &self.counts) else {
            return false;
        };
        let conn = entry.value_mut();
        if !conn.has(flags::OFFLOADED) || conn.has(flags::REVOKED) {
            return false;
        }
        let timeout = self.refresh_timeout(proto, conn);
        let refreshed = tick.after_secs(timeout);
        if refreshed.is_after(conn.expires) {
            conn.expires = refreshed;
        }
        true
    }

    /// The timeout a packet of an offloaded flow would give its entry.
    fn refresh_timeout(&self, proto: u8, conn: &Conn) -> u32 {
        let t = &self.timeouts;
        match (&conn.proto, proto) {
            // Its windows are stale (statewall sees none of its segments): no unacknowledged
            // data cap, the state's own timeout.
            (ProtoState::Tcp(tc), _) => tc.state.timeout(t),
            (ProtoState::Datagram(_), proto::UDP) => t.udp_replied,
            (ProtoState::Datagram(_), proto::ICMP | proto::ICMPV6) => t.icmp,
            (ProtoState::Datagram(_), _) => t.generic_replied,
        }
    }
}
