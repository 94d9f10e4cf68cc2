//! TCP segments through the table: the flag check, then the connection's state machine
//! ([`super::tcp`]) and what the entry learns from it, or what the segment would open.

use dashmap::mapref::one::RefMut;

use super::handshakes::Recall;
use super::tcp::{check_flags, Step, TcpConn, TcpState};
use super::{
    flags, flow_of, kernel, Addr, Conn, ConnState, Dir, Key, Milestone, Opening, ProtoState, Side,
    Track, Tracked,
};
use crate::packet::TcpHeader;
use crate::proto;
use crate::verdict::{DropReason, Pass, Verdict};

/// Tracks one TCP segment.
#[inline(always)]
pub(super) fn track<A: Addr>(side: &Side<'_, A>, tcp: &TcpHeader) -> Track {
    let (key, from_lo) = side.key(proto::TCP, (tcp.sport, tcp.dport));
    if let Err(reason) = check_flags(tcp.flags) {
        // Invalid inside a connection; of no connection, a stealth probe (NULL, XMAS, ...).
        return match side.peek(&key) {
            Some(_) => Track::Judged(Tracked::drop(reason, None)),
            None => Track::Stray(reason),
        };
    }
    if let Some(mut entry) = side.live(&key) {
        let conn = entry.value_mut();
        if conn.has(flags::REVOKED) {
            return Track::Judged(Tracked::drop(DropReason::Revoked, Some(conn.state())));
        }
        let dir = conn.dir(from_lo);
        let blind = conn.has(flags::BLIND);
        // Back from the kernel fast path (the kernel took the flow off it when it queued this
        // segment): the windows are learned anew from this segment, which the kernel's window
        // check let through.
        let resumed = side.via.fastpath && conn.has(flags::OFFLOADED);
        if resumed {
            conn.flags &= !flags::OFFLOADED;
        }
        let mut offloaded = conn.has(flags::OFFLOADED);
        let ProtoState::Tcp(tc) = &mut conn.proto else {
            return Track::Judged(Tracked::drop(DropReason::MalformedTcp, None));
        };
        if resumed {
            tc.resume(dir, tcp);
        }
        let old = tc.state;
        // A SYN on a flow adopted blindly is a new connection, judged by the rules: the entry
        // never saw a handshake, so the SYN is not a retransmission, and resynchronising on
        // it would admit what the rules never judged.
        let blind_syn = blind && tcp.flags.syn() && !tcp.flags.ack();
        let mut step = if blind_syn {
            Ok(Step::Reopen)
        } else {
            tc.track(dir, tcp)
        };
        if offloaded
            && side.via.admitted
            && matches!(
                step,
                Err(DropReason::AckUnsentData | DropReason::SeqAboveWindow)
            )
        {
            // A segment of a flow on the fast path, beyond what statewall saw, that the kernel's
            // window check let through (ADMITTED came with it): the kernel carried the
            // segments in between. It came without FASTPATH because another packet of the
            // flow (its FIN, on the other CPU) cleared the bit and was queued just after it:
            // the flow is back from the fast path with this segment.
            conn.flags &= !flags::OFFLOADED;
            offloaded = false;
            tc.resume(dir, tcp);
            step = tc.track(dir, tcp);
        }
        if matches!(step, Ok(Step::Accept))
            && !side.ct.standby.load(std::sync::atomic::Ordering::Relaxed)
        {
            tc.settle();
        }
        match step {
            Ok(Step::Accept) => {
                let (k, conn) = entry.pair_mut();
                side.account(k, conn, dir);
                return learn(side, &mut entry, dir, old);
            }
            Ok(Step::Ignore) => {
                let state = Some(ConnState::Tcp(tc.state));
                let (k, conn) = entry.pair_mut();
                side.account(k, conn, dir);
                return Track::Judged(Tracked {
                    offloaded,
                    adopted: kernel::claim(&key, conn),
                    ..Tracked::pass(Pass::Ignored, state)
                });
            }
            Err(reason) => {
                return Track::Judged(Tracked::drop(reason, Some(ConnState::Tcp(old))));
            }
            // Judged below as a new connection; opening it replaces the old entry.
            Ok(Step::Reopen) => {
                drop(entry);
                return opening_syn(side, key, from_lo, tcp);
            }
        }
    }
    if let Some(track) = recall(side, key, from_lo, tcp) {
        return track;
    }
    opening_syn(side, key, from_lo, tcp)
}

/// A segment of no entry (or a SYN reopening a closed one): what it would open, or a stray.
fn opening_syn<A: Addr>(side: &Side<'_, A>, key: Key<A>, from_lo: bool, tcp: &TcpHeader) -> Track {
    let f = tcp.flags;
    let t = &side.ct.timeouts;
    if f.syn() && !f.ack() {
        let conn = TcpConn::from_syn(tcp);
        let timeout = conn.timeout(t);
        return Track::New(side.opening(key, from_lo, 0, ProtoState::Tcp(conn), timeout));
    }
    if f.ack() && !f.syn() && !f.rst() {
        // What a connection established before a restart carries: adoptable.
        let conn = ProtoState::Tcp(TcpConn::pickup(tcp));
        let opening = side.opening(key, from_lo, flags::BLIND, conn, t.pickup);
        return Track::MidStream(opening);
    }
    if f.rst() && !f.syn() && side.via.admitted {
        // The RST of a connection statewall admitted, valid by the kernel's window check: what
        // the kernel carried on the fast path (or kept) while no statewall ran may end with it.
        // Adoptable, already closed: it passes, data after it does not.
        let conn = ProtoState::Tcp(TcpConn::pickup_reset(tcp));
        let opening = side.opening(key, from_lo, flags::BLIND, conn, t.close);
        return Track::MidStream(opening);
    }
    Track::Stray(DropReason::NoConnection)
}

/// A segment of no entry, judged by the handshake remembered under `key` if early drop evicted
/// one ([`super::handshakes`]): the segment that completes it brings the connection back
/// ([`Track::Resumed`]); one that its state machine accepts otherwise (the responder's
/// SYN/ACK, a retransmitted SYN) passes and is learned there, taking no slot of the table.
/// `None`: nothing remembered, or the segment does not fit (judged as of no connection).
fn recall<A: Addr>(
    side: &Side<'_, A>,
    key: Key<A>,
    from_lo: bool,
    tcp: &TcpHeader,
) -> Option<Track> {
    let timeouts = &side.ct.timeouts;
    side.table
        .handshakes
        .recall(&key, side.now, |conn| {
            let dir = conn.dir(from_lo);
            let ProtoState::Tcp(mut tc) = conn.proto else {
                return Recall::Keep(None);
            };
            let old = tc.state;
            let pass = match tc.track(dir, tcp) {
                Ok(Step::Accept) => Pass::Tracked,
                Ok(Step::Ignore) => Pass::Ignored,
                Ok(Step::Reopen) | Err(_) => return Recall::Keep(None),
            };
            conn.proto = ProtoState::Tcp(tc);
            conn.tally.add(dir, side.len);
            if dir == Dir::Reply {
                conn.flags |= flags::SEEN_REPLY;
            }
            if pass == Pass::Tracked {
                conn.expires = side.now.after_secs(tc.timeout(timeouts));
            }
            let state = Some(ConnState::Tcp(tc.state));
            match (old, tc.state) {
                (TcpState::SynRecv, TcpState::Established) => {
                    conn.flags |= flags::ASSURED;
                    let opening = Opening {
                        key: A::wrap(key),
                        conn: *conn,
                        now: side.now,
                    };
                    Recall::Take(Some(Track::Resumed(opening)))
                }
                // Refused (a RST): nothing left to complete.
                (_, TcpState::Close) => {
                    Recall::Take(Some(Track::Judged(Tracked::pass(pass, state))))
                }
                (TcpState::SynSent | TcpState::SynSent2, TcpState::SynRecv)
                    if dir == Dir::Reply =>
                {
                    let milestone = Some(Milestone::Replied(flow_of(&key, conn)));
                    Recall::Keep(Some(Track::Judged(Tracked {
                        milestone,
                        ..Tracked::pass(pass, state)
                    })))
                }
                _ => Recall::Keep(Some(Track::Judged(Tracked::pass(pass, state)))),
            }
        })
        .flatten()
}

/// A valid segment was accepted by the state machine: refresh the entry, mark it assured when
/// the handshake completes, keep the per-source count in step, and report the milestone (and
/// the claim of an adopted entry: [`kernel::claim`]).
#[inline(always)]
fn learn<A: Addr>(
    side: &Side<'_, A>,
    entry: &mut RefMut<'_, Key<A>, Conn>,
    dir: Dir,
    old: TcpState,
) -> Track {
    let key = *entry.key();
    let conn = entry.value_mut();
    let t = &side.ct.timeouts;
    let (new, timeout) = match &conn.proto {
        ProtoState::Tcp(tc) => (tc.state, tc.timeout(t)),
        ProtoState::Datagram(_) => {
            return Track::Judged(Tracked::drop(DropReason::MalformedTcp, None));
        }
    };
    if dir == Dir::Reply {
        conn.flags |= flags::SEEN_REPLY;
    }
    conn.expires = side.now.after_secs(timeout);
    let both_seen = matches!(&conn.proto, ProtoState::Tcp(tc) if tc.both_seen());
    let assured_now = !conn.has(flags::ASSURED)
        && ((old == TcpState::SynRecv && new == TcpState::Established)
            || (conn.picking_up() && both_seen));
    if assured_now {
        conn.flags |= flags::ASSURED;
    }
    let handshake = matches!(old, TcpState::SynSent | TcpState::SynSent2);
    let milestone = if assured_now {
        Some(Milestone::Established(flow_of(&key, conn)))
    } else if handshake && new == TcpState::SynRecv && dir == Dir::Reply {
        Some(Milestone::Replied(flow_of(&key, conn)))
    } else if handshake && new == TcpState::Close && dir == Dir::Reply {
        Some(Milestone::Refused(flow_of(&key, conn)))
    } else {
        None
    };
    if conn.picking_up() {
        conn.expires = conn.expires.earlier(side.now.after_secs(t.pickup));
    }
    if old != new {
        tracing::trace!(from = %old, to = %new, "tcp state");
        side.table
            .recount(&key, conn, side.ct.limits.per_source_limit());
        // An assured connection that starts closing becomes evictable, and one that closed
        // a first victim.
        let was_open = matches!(old, TcpState::SynRecv | TcpState::Established);
        let closed = matches!(new, TcpState::TimeWait | TcpState::Close);
        if conn.has(flags::ASSURED) && (was_open || closed) {
            if let Some(victim) = conn.victim() {
                let cap = side.ct.limits.candidate_cap();
                side.table.note_candidate(key, victim, side.now, cap);
            }
        }
    }
    let offload = &side.ct.offload;
    let validated = offload.enable
        && conn.has(flags::ASSURED)
        && match &conn.proto {
            ProtoState::Tcp(tc) => tc.validated(offload.tcp_segments),
            ProtoState::Datagram(_) => false,
        };
    if validated {
        conn.flags |= flags::OFFLOADED;
    } else {
        // Its handshake is not done, or its teardown began: every packet to statewall again.
        conn.flags &= !flags::OFFLOADED;
    }
    Track::Judged(Tracked {
        verdict: Verdict::Accept(Pass::Tracked),
        state: Some(ConnState::Tcp(new)),
        milestone,
        adopted: kernel::claim(&key, conn),
        offloaded: conn.has(flags::OFFLOADED),
    })
}
