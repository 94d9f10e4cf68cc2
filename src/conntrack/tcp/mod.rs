//! The TCP state machine as seen from the middle, with window tracking.
//!
//! States and transitions follow Linux `nf_conntrack_proto_tcp.c` (itself RFC 9293 seen from a
//! middlebox): `transitions` holds the table, `window` the window check, and
//! [`TcpConn::track`] drives them for one segment (checks first, then the transition). Where a
//! segment meets the connection table is `conntrack/segment.rs`.
//!
//! Segments breaking the window's upper bounds are *invalid* and dropped; late retransmissions
//! and overly delayed ACKs are *ignored* (passed, nothing learned), as Linux does. statewall is
//! stricter than Linux in three documented places: data beyond a sender's FIN, data after a
//! valid RST, and any RST whose sequence number is outside the window are dropped.

use std::fmt;

mod transitions;
mod window;

pub use transitions::check_flags;

use super::{Dir, Timeouts};
use crate::packet::{Seq, TcpHeader};
use crate::verdict::DropReason;
use transitions::{invalid_reason, transition, Cell, Class};
use window::{pflag, seg_end, Peer, Window};

/// What the kernel's TCP tracker knows of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelTcp {
    /// The state.
    pub state: TcpState,
    /// Window scale shift per direction (`[original, reply]`); 0 unless both sides offered
    /// window scaling.
    pub scale: [u8; 2],
    /// Whether each direction offered window scaling in its SYN.
    pub window_scale: [bool; 2],
    /// Whether each direction offered SACK in its SYN.
    pub sack_perm: [bool; 2],
}

/// TCP connection states (Linux conntrack names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    /// SYN seen from the originator.
    SynSent,
    /// SYN seen from both sides (simultaneous open).
    SynSent2,
    /// SYN/ACK seen.
    SynRecv,
    /// Handshake completed.
    Established,
    /// A FIN seen (FIN-WAIT-1 on the closing side).
    FinWait,
    /// The first FIN acknowledged (CLOSE-WAIT / FIN-WAIT-2).
    CloseWait,
    /// FINs seen from both sides, the last not yet acknowledged.
    LastAck,
    /// Both FINs acknowledged.
    TimeWait,
    /// Aborted by a valid RST.
    Close,
}

impl TcpState {
    /// Every state, for counters.
    pub const ALL: [TcpState; 9] = [
        TcpState::SynSent,
        TcpState::SynSent2,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
    ];

    /// Stable upper-case name, as `conntrack -L` prints it.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynSent2 => "SYN_SENT2",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
        }
    }

    /// Timeout of this state.
    #[inline]
    pub fn timeout(self, t: &Timeouts) -> u32 {
        match self {
            TcpState::SynSent | TcpState::SynSent2 => t.syn_sent,
            TcpState::SynRecv => t.syn_recv,
            TcpState::Established => t.established,
            TcpState::FinWait => t.fin_wait,
            TcpState::CloseWait => t.close_wait,
            TcpState::LastAck => t.last_ack,
            TcpState::TimeWait => t.time_wait,
            TcpState::Close => t.close,
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Result of tracking one segment of a known connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Valid: state and windows learned from it.
    Accept,
    /// Passed without learning anything (late retransmission, delayed ACK, RST inside the
    /// window but not exact, segment the state machine cannot judge yet).
    Ignore,
    /// A SYN opening a new connection on the tuple of a closed one: the caller replaces the
    /// entry (and judges the SYN as a new connection).
    Reopen,
}

/// Misc flags of a connection.
mod cflag {
    /// Simultaneous open seen.
    pub const SIMOPEN: u8 = 1 << 0;
    /// The last ignored SYN offered window scaling (Linux `last_flags`).
    pub const LAST_WSCALE: u8 = 1 << 1;
    /// The last ignored SYN offered SACK (Linux `last_flags`).
    pub const LAST_SACK: u8 = 1 << 2;
    /// The last ignored SYN's window scale (Linux `last_wscale`, at most 14) is kept in the
    /// high four bits.
    pub const WSCALE_SHIFT: u8 = 4;
    /// The windows are stale lower bounds ([`super::TcpConn::go_stale`]): this gateway did not
    /// see every segment for a while (it stood by, or the peer gateway carried the flow).
    pub const STALE: u8 = 1 << 3;
}

/// Segments each side must send in ESTABLISHED after the windows went stale before they are
/// judged strictly again.
const RELEARN_SEGMENTS: u8 = 4;

/// TCP part of a connection entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpConn {
    /// Current state.
    pub state: TcpState,
    /// Direction of the last segment that changed or was ignored by the state machine.
    last_dir: u8,
    /// Flag class of that segment.
    last_class: u8,
    /// [`cflag`] bits.
    misc: u8,
    /// What an answer to that segment names: a SYN's sequence end (its SYN/ACK acknowledges
    /// it: resynchronising on an ignored SYN), an ACK's acknowledgement number (the RST
    /// answering an unacceptable ACK carries it as its sequence number, RFC 9293 §3.10.7.3).
    last_end: Seq,
    /// Per direction: `[original, reply]`.
    peers: [Peer; 2],
}

impl TcpConn {
    /// A new connection opened by `syn` (a SYN without ACK, maybe with data: TCP Fast Open).
    pub fn from_syn(syn: &TcpHeader) -> TcpConn {
        let mut orig = Peer::default();
        orig.init_from_syn(syn, seg_end(syn));
        TcpConn {
            state: TcpState::SynSent,
            last_dir: Dir::Original as u8,
            last_class: Class::Syn as u8,
            misc: 0,
            last_end: seg_end(syn),
            peers: [orig, Peer::default()],
        }
    }

    /// A connection adopted mid-stream from `seg` (pickup mode after a restart). Windows are
    /// learned from what passes; window violations are ignored rather than dropped because the
    /// window scale of the connection is unknown.
    pub fn pickup(seg: &TcpHeader) -> TcpConn {
        let end = seg_end(seg);
        let maxwin = u32::from(seg.window).max(1);
        let liberal = pflag::LIBERAL | pflag::SACK_PERM;
        let orig = Peer {
            end,
            maxend: end + maxwin,
            maxwin,
            maxack: seg.ack,
            scale: 0,
            flags: liberal
                | if seg.flags.ack() {
                    pflag::MAXACK_SET
                } else {
                    0
                },
            segments: 0,
        };
        // Until the other side speaks, its end is what this segment acknowledges.
        let reply = Peer {
            end: seg.ack,
            maxend: seg.ack,
            flags: liberal,
            ..Peer::default()
        };
        TcpConn {
            state: TcpState::Established,
            last_dir: Dir::Original as u8,
            last_class: Class::of(seg.flags) as u8,
            misc: 0,
            last_end: end,
            peers: [orig, reply],
        }
    }

    /// A connection adopted from its RST ([`crate::conntrack::Via::admitted`]): picked up as
    /// [`TcpConn::pickup`] does, already closed.
    pub fn pickup_reset(seg: &TcpHeader) -> TcpConn {
        TcpConn {
            state: TcpState::Close,
            ..TcpConn::pickup(seg)
        }
    }

    /// The same connection seen from the other end (a flow adopted mid-stream whose
    /// originator is the segment's receiver).
    pub(crate) fn reverse(&mut self) {
        self.peers.swap(0, 1);
        self.last_dir ^= 1;
    }

    /// Whether both ends have sent a segment the window check learned from.
    pub(crate) fn both_seen(&self) -> bool {
        self.peers.iter().all(|p| p.maxwin != 0)
    }

    /// A connection adopted from the kernel table in the state the kernel knows ([`crate::adopt`]).
    /// Both windows are learned from the next segments, as the kernel learns them for an entry
    /// conntrackd injected. The window scales are the kernel's when its entry knows the
    /// handshake's options; without them (an entry replicated by conntrackd, which does not
    /// carry the TCP flags) the scale is unknown and window violations are ignored rather than
    /// dropped, as for a connection picked up mid-stream.
    pub fn adopted(k: &KernelTcp) -> TcpConn {
        let known = k.window_scale.iter().chain(&k.sack_perm).any(|b| *b);
        let peer = |d: usize| {
            let mut flags = if known {
                pflag::LAGGING
            } else {
                pflag::LIBERAL | pflag::SACK_PERM
            };
            if k.window_scale[d] {
                flags |= pflag::WSCALE;
            }
            if k.sack_perm[d] {
                flags |= pflag::SACK_PERM;
            }
            Peer {
                scale: if known { k.scale[d].min(14) } else { 0 },
                flags,
                ..Peer::default()
            }
        };
        TcpConn {
            state: k.state,
            last_dir: Dir::Original as u8,
            last_class: Class::Ack as u8,
            misc: 0,
            last_end: Seq(0),
            peers: [peer(0), peer(1)],
        }
    }

    /// Brings a connection adopted earlier (and not used since) up to the kernel's news: its
    /// state, and its window scales when the kernel knows them. A connection statewall tracked
    /// itself before it went back to following the kernel keeps what it knew of the windows
    /// (stale lower bounds): only its state follows.
    pub fn refresh(&mut self, k: &KernelTcp) {
        if !self.stale() && k.window_scale.iter().chain(&k.sack_perm).any(|b| *b) {
            *self = TcpConn::adopted(k);
        } else {
            self.state = k.state;
        }
    }

    /// This gateway stops seeing every segment of the connection (it stands by and the peer
    /// gateway forwards the flow, or it takes over from the peer, which did): what it knows of
    /// both windows becomes a set of lower bounds. The segments still in flight when the
    /// address moves, and the flow's segments when it comes back, may be further on than those
    /// bounds: a segment beyond them moves them up (the sender's end, and the receiver's end
    /// to what it acknowledges) and is learned as usual, instead of being invalid; an older
    /// one (a retransmission, a delayed ACK) is ignored as before. The windows are judged
    /// strictly again once each side has sent [`RELEARN_SEGMENTS`] segments in ESTABLISHED
    /// while this gateway forwards the flow ([`TcpConn::settle`]). The state, the scales and the options stay; so do the state rules (nothing after a
    /// RST, data beyond a FIN) and the flag checks. A connection judged liberally already
    /// (picked up, window scale unknown) stays so, and one whose windows are still to be
    /// learned (adopted, no segment seen) has nothing stale.
    pub fn go_stale(&mut self) {
        if self.peers.iter().any(|p| p.has(pflag::LIBERAL))
            || self.peers.iter().all(|p| p.maxwin == 0)
        {
            return;
        }
        self.misc |= cflag::STALE;
        for p in &mut self.peers {
            p.segments = 0;
        }
    }

    /// The gateway forwards the flow (it is not the standby): stale windows are judged strictly
    /// again once each side has sent [`RELEARN_SEGMENTS`] segments in ESTABLISHED since they
    /// went stale. A standby sees only a few of the flow's segments (the peer forwards the
    /// rest), so its windows stay stale until it takes over.
    pub(crate) fn settle(&mut self) {
        if self.stale() && self.peers.iter().all(|p| p.segments >= RELEARN_SEGMENTS) {
            self.misc &= !cflag::STALE;
        }
    }

    /// Whether the windows are stale lower bounds ([`TcpConn::go_stale`]).
    pub(crate) fn stale(&self) -> bool {
        self.misc & cflag::STALE != 0
    }

    /// Whether the connection is validated for the kernel fast path: ESTABLISHED, both windows
    /// learned from its own handshake (not picked up mid-stream, where they are liberal), and
    /// at least `segments` segments accepted from each side since the handshake.
    pub fn validated(&self, segments: u8) -> bool {
        self.state == TcpState::Established
            && !self.stale()
            && self
                .peers
                .iter()
                .all(|p| p.maxwin != 0 && !p.has(pflag::LIBERAL))
            && [Dir::Original, Dir::Reply]
                .iter()
                .all(|d| self.established_segments(*d) >= segments)
    }

    fn established_segments(&self, dir: Dir) -> u8 {
        self.peers[dir.idx()].segments
    }

    /// The kernel carried this connection's middle (the fast path) and statewall saw none of
    /// it: what it knows of the windows is stale. `seg`, from `dir`, is the first segment it
    /// sees again (a FIN, a RST, ...), which the kernel's own window check let through
    /// (`nf_conntrack_tcp_be_liberal = 0`). Both windows are learned anew, as for a connection
    /// picked up mid-stream but keeping the window scales and options of its handshake: the
    /// sender's end moves forward to this segment, the receiver's to what it acknowledges, and
    /// the receiver's window is learned from its next segment. The counts of segments since
    /// the handshake start again.
    pub fn resume(&mut self, dir: Dir, seg: &TcpHeader) {
        let keep = pflag::WSCALE | pflag::SACK_PERM | pflag::LIBERAL | pflag::FIN_SENT;
        for p in &mut self.peers {
            *p = Peer {
                scale: p.scale,
                flags: p.flags & keep,
                ..Peer::default()
            };
        }
        let end = seg_end(seg);
        let sender = &mut self.peers[dir.idx()];
        sender.end = end;
        sender.maxwin = (u32::from(seg.window) << sender.scale).max(1);
        sender.maxend = end + sender.maxwin;
        if seg.flags.ack() {
            let receiver = &mut self.peers[dir.flip().idx()];
            let mut acked = seg.ack;
            if receiver.has(pflag::SACK_PERM) {
                if let Some(edge) = seg.options.sack_right_edge.filter(|e| e.after(acked)) {
                    acked = edge;
                }
            }
            receiver.end = acked;
            receiver.maxend = acked;
            receiver.flags |= pflag::RESUMED;
        }
        self.note_last(dir, Class::of(seg.flags), seg);
    }

    /// The next sequence number of each side: `(original, reply)`.
    pub fn next_seqs(&self) -> (Seq, Seq) {
        (self.peers[0].end, self.peers[1].end)
    }

    /// Timeout for the current state, capped while data is unacknowledged.
    #[inline]
    pub fn timeout(&self, t: &Timeouts) -> u32 {
        let base = self.state.timeout(t);
        let unacked = self.peers.iter().any(|p| p.has(pflag::UNACKED));
        if unacked {
            base.min(t.unacknowledged)
        } else {
            base
        }
    }

    /// Tracks one segment of this connection travelling in `dir`.
    ///
    /// The flag combination must already have passed [`check_flags`].
    pub fn track(&mut self, dir: Dir, seg: &TcpHeader) -> Result<Step, DropReason> {
        let class = Class::of(seg.flags);
        let old = self.state;
        // A SYN on a closed or aborted connection opens a new one (RFC 9293 §3.10.7.4: TIME-WAIT
        // may accept a new SYN), whichever side sends it.
        if class == Class::Syn && matches!(old, TcpState::TimeWait | TcpState::Close) {
            return Ok(Step::Reopen);
        }
        // SYNs and SYN/ACKs are judged by the table (a SYN reusing the tuple of a half-closed
        // connection is ignored, the SYN/ACK answering it resynchronises), not as data.
        if !matches!(class, Class::Syn | Class::SynAck) {
            self.check_closed(dir, class, seg)?;
        }
        let mut new = match transition(dir, class, old) {
            Cell::To(s) => s,
            Cell::Invalid => return Err(invalid_reason(dir, class)),
            Cell::Ignore => {
                if !self.resync(dir, class, seg) {
                    self.note_last(dir, class, seg);
                    if class == Class::Syn && dir == Dir::Original {
                        self.note_syn_options(seg);
                    }
                    return Ok(Step::Ignore);
                }
                TcpState::SynRecv
            }
        };
        match new {
            TcpState::SynSent2 => self.misc |= cflag::SIMOPEN,
            // In a simultaneous open the final ACK may come from either side.
            TcpState::SynRecv
                if dir == Dir::Reply && class == Class::Ack && self.misc & cflag::SIMOPEN != 0 =>
            {
                new = TcpState::Established
            }
            TcpState::Close => return self.check_rst(dir, old, seg),
            _ => {}
        }
        match self.in_window(dir, old, seg) {
            Window::Accept => {}
            Window::Ignore => return Ok(Step::Ignore),
            Window::Invalid(reason) => return Err(reason),
        }
        self.note_last(dir, class, seg);
        if seg.flags.fin() {
            self.peers[dir.idx()].flags |= pflag::FIN_SENT;
        }
        if old == TcpState::Established && new == TcpState::Established {
            let sender = &mut self.peers[dir.idx()];
            sender.segments = sender.segments.saturating_add(1);
        }
        self.state = new;
        Ok(Step::Accept)
    }

    /// statewall's stricter close rules: nothing new after a FIN or a RST.
    fn check_closed(&self, dir: Dir, class: Class, seg: &TcpHeader) -> Result<(), DropReason> {
        if class == Class::Rst {
            return Ok(());
        }
        let carries_data = seg.payload_len > 0 || seg.flags.fin();
        if self.state == TcpState::Close && carries_data {
            return Err(DropReason::DataAfterRst);
        }
        let sender = &self.peers[dir.idx()];
        if sender.has(pflag::FIN_SENT) && seg_end(seg).after(sender.end) {
            return Err(if self.state == TcpState::TimeWait {
                DropReason::DataAfterClose
            } else {
                DropReason::DataAfterFin
            });
        }
        Ok(())
    }

    /// Linux's resynchronisation: a SYN/ACK acknowledging a SYN we ignored means both ends
    /// agree on a new connection we did not follow. Adopt it.
    fn resync(&mut self, dir: Dir, class: Class, seg: &TcpHeader) -> bool {
        let last_dir = if self.last_dir == 0 {
            Dir::Original
        } else {
            Dir::Reply
        };
        let acks_ignored_syn = class == Class::SynAck
            && Class::from_u8(self.last_class) == Class::Syn
            && last_dir != dir
            && seg.flags.ack()
            && seg.ack == self.last_end;
        if !acks_ignored_syn {
            return false;
        }
        // The ignored SYN's window scale and SACK-permitted are kept (Linux's `last_wscale`,
        // `last_flags`); its window is not (entries stay small): the window grows from the
        // next segments, as the check's lower bound only needs it to be non-zero.
        let mut flags = 0;
        if self.misc & cflag::LAST_WSCALE != 0 {
            flags |= pflag::WSCALE;
        }
        if self.misc & cflag::LAST_SACK != 0 {
            flags |= pflag::SACK_PERM;
        }
        self.peers[last_dir.idx()] = Peer {
            end: self.last_end,
            maxend: self.last_end,
            maxwin: 1,
            scale: self.misc >> cflag::WSCALE_SHIFT,
            flags,
            ..Peer::default()
        };
        self.peers[dir.idx()] = Peer::default();
        self.state = TcpState::SynSent;
        // A new connection: nothing stale about its windows.
        self.misc &= !cflag::STALE;
        true
    }

    /// Keeps the options of an ignored SYN for a resynchronisation on its SYN/ACK.
    fn note_syn_options(&mut self, seg: &TcpHeader) {
        let mut misc = self.misc & (cflag::SIMOPEN | cflag::STALE);
        if let Some(shift) = seg.options.wscale {
            misc |= cflag::LAST_WSCALE | (shift.min(14) << cflag::WSCALE_SHIFT);
        }
        if seg.options.sack_permitted {
            misc |= cflag::LAST_SACK;
        }
        self.misc = misc;
    }

    fn note_last(&mut self, dir: Dir, class: Class, seg: &TcpHeader) {
        self.last_dir = dir as u8;
        self.last_class = class as u8;
        self.last_end = if class == Class::Ack {
            seg.ack
        } else {
            seg_end(seg)
        };
    }

    /// RST: an exact sequence number closes; inside the window passes without closing (the
    /// endpoint answers with a challenge ACK, RFC 5961); anything else is dropped.
    fn check_rst(&mut self, dir: Dir, old: TcpState, seg: &TcpHeader) -> Result<Step, DropReason> {
        let s = self.peers[dir.idx()];
        let r = self.peers[dir.flip().idx()];
        let handshake = matches!(old, TcpState::SynSent | TcpState::SynSent2);
        if !handshake && s.maxwin == 0 {
            // The sender's window is unknown (a connection adopted from the kernel table, whose
            // first segment from this side is a RST): pass it without closing, the endpoint
            // checks the sequence number itself (RFC 5961).
            return Ok(Step::Ignore);
        }
        let answers_ignored_ack = Class::from_u8(self.last_class) == Class::Ack
            && self.last_dir != dir as u8
            && seg.seq == self.last_end;
        if handshake && r.maxwin == 0 && answers_ignored_ack {
            // RFC 9293 §3.5.2 half-open recovery: the opener answers the peer's ACK (of an old
            // connection on this tuple) with `RST <SEQ=SEG.ACK>`; it ends that old connection
            // at the peer and leaves this one opening.
            return Ok(Step::Ignore);
        }
        if handshake && s.maxwin == 0 && !seg.flags.ack() {
            // A RST without ACK answering the SYN: the opener ignores it (RFC 9293 §3.10.7.3).
            // Linux passes it (and closes its entry); it passes here without closing, so that
            // a blind RST cannot end the handshake's state.
            return Ok(Step::Ignore);
        }
        let exact = if handshake && s.maxwin == 0 {
            // Answering the SYN (with ACK, above): acceptable when it acknowledges the SYN
            // (RFC 9293 §3.10.7.3).
            seg.ack == r.end
        } else if handshake && r.maxwin == 0 {
            // The opener aborting its own SYN.
            seg.seq == s.end
        } else {
            seg.seq == s.end || (r.has(pflag::MAXACK_SET) && seg.seq == r.maxack)
        };
        if exact {
            self.note_last(dir, Class::Rst, seg);
            self.state = TcpState::Close;
            return Ok(Step::Accept);
        }
        let in_window =
            s.maxwin != 0 && !seg.seq.after(s.maxend) && !seg.seq.before(s.end - r.maxwin);
        if in_window || s.has(pflag::LIBERAL) || self.stale() {
            // Stale windows: the RST may belong to where the flow went on through the peer.
            Ok(Step::Ignore)
        } else {
            Err(DropReason::RstOutOfWindow)
        }
    }
}

#[cfg(test)]
mod tests;
