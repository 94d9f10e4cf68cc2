//! Flows without a state machine (UDP, ICMP echo, any other protocol): a flow per tuple,
//! *unreplied* until a packet comes back, then *replied*. As in Linux (`nf_conntrack_udp`), a
//! replied flow keeps the unreplied timeout until it is a *stream* (traffic more than two
//! seconds after it opened): then it gets the replied timeout and, unless it is ICMP, is
//! assured (not evicted early when the table is full). A query answered once (DNS, a spoofed
//! source's answer) stays evictable. ICMP echo is never assured.

use super::{flags, flow_of, kernel, Addr, Dir, Milestone, ProtoState, Side, Track, Tracked};
use crate::proto;
use crate::verdict::{DropReason, Pass, Verdict};

/// A flow still busy this long after it opened (2 s, in ticks) is a stream.
const STREAM_TICKS: i32 = 20;

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
        let (k, conn) = entry.pair_mut();
        if conn.has(flags::REVOKED) {
            return Track::Judged(Tracked::drop(DropReason::Revoked, Some(conn.state())));
        }
        let dir = conn.dir(from_lo);
        side.account(k, conn, dir);
        // As in Linux, the first reply itself does not make a stream: a packet after it does.
        let replied_before = conn.has(flags::SEEN_REPLY);
        let first_reply = dir == Dir::Reply && !replied_before;
        if dir == Dir::Reply {
            conn.flags |= flags::SEEN_REPLY;
        }
        let opened = match conn.proto {
            ProtoState::Datagram(t) => t,
            ProtoState::Tcp(_) => side.now,
        };
        let stream = replied_before && side.now.ticks_from(opened) > STREAM_TICKS;
        let timeout = if stream { replied } else { unreplied };
        if stream && !matches!(proto, proto::ICMP | proto::ICMPV6) {
            conn.flags |= flags::ASSURED;
        }
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
            milestone: first_reply.then(|| Milestone::Replied(flow_of(k, conn))),
            adopted: kernel::claim(k, conn),
            offloaded: conn.has(flags::OFFLOADED),
        });
    }
    if !may_open {
        return Track::Judged(Tracked::drop(DropReason::IcmpUnexpectedReply, None));
    }
    let state = ProtoState::Datagram(side.now);
    Track::New(side.opening(key, from_lo, 0, state, unreplied))
}
