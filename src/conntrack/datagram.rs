//! Flows without a state machine (UDP, ICMP echo, any other protocol): a flow per tuple,
//! *unreplied* until a packet comes back, then *replied* (and assured: never evicted early).
//! Each state has its timeout.

use super::{flags, flow_of, Addr, Dir, Milestone, ProtoState, Side, Track, Tracked};
use crate::verdict::{DropReason, Pass, Verdict};

/// Tracks one datagram of protocol `proto` with these "ports" (UDP ports, the echo id twice,
/// or zeros). `may_open`: whether a datagram of no flow opens one (an echo reply does not).
/// `(unreplied, replied)`: the timeouts of the two states.
pub(super) fn track<A: Addr>(
    side: &Side<'_, A>,
    proto: u8,
    ports: (u16, u16),
    may_open: bool,
    (unreplied, replied): (u32, u32),
) -> Track {
    let (key, from_lo) = side.key(proto, ports);
    if let Some(mut entry) = side.live(&key) {
        let conn = entry.value_mut();
        if conn.has(flags::REVOKED) {
            return Track::Judged(Tracked::drop(DropReason::Revoked, Some(conn.state())));
        }
        let dir = conn.dir(from_lo);
        let first_reply = dir == Dir::Reply && !conn.has(flags::SEEN_REPLY);
        if dir == Dir::Reply {
            conn.flags |= flags::SEEN_REPLY | flags::ASSURED;
        }
        let timeout = if conn.has(flags::SEEN_REPLY) {
            replied
        } else {
            unreplied
        };
        conn.expires = side.now.after_secs(timeout);
        let offload = &side.ct.offload;
        if offload.enable && offload.datagrams && conn.has(flags::SEEN_REPLY) {
            // Answered once: the kernel may carry the rest (a one-way stream after its first
            // reply included).
            conn.flags |= flags::OFFLOADED;
        }
        return Track::Judged(Tracked {
            verdict: Verdict::Accept(Pass::Tracked),
            state: Some(conn.state()),
            milestone: first_reply.then(|| Milestone::Replied(flow_of(&key, conn))),
            offloaded: conn.has(flags::OFFLOADED),
        });
    }
    if !may_open {
        return Track::Judged(Tracked::drop(DropReason::IcmpUnexpectedReply, None));
    }
    Track::New(side.opening(key, from_lo, 0, ProtoState::Datagram, unreplied))
}
