//! The TCP state machine as seen from the middle, with window tracking.
//!
//! States and transitions follow Linux `nf_conntrack_proto_tcp.c` (itself RFC 9293 seen from a
//! middlebox); window tracking is Guido van Rooij's scheme as used by Linux and pf:
//!
//! ```text
//! I.   Upper bound for valid data:  seq <= sender.maxend
//! II.  Lower bound for valid data:  seq + len >= sender.end - receiver.maxwin
//! III. Upper bound for valid ack:   ack <= receiver.end
//! IV.  Lower bound for valid ack:   ack >= receiver.end - max(sender.maxwin, 66000)
//! ```
//!
//! Segments breaking I or III are *invalid* and dropped; segments breaking II or IV are late
//! retransmissions or overly delayed ACKs: they are *ignored* (passed, nothing learned), as
//! Linux does. statewall is stricter than Linux in three documented places: data beyond a
//! sender's FIN, data after a valid RST, and any RST whose sequence number is outside the
//! window are dropped.

use std::fmt;

use super::{Dir, Timeouts};
use crate::packet::{Seq, TcpFlags, TcpHeader, TcpShape};
use crate::verdict::DropReason;

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

/// The flag class of a segment, the column index of the transition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Class {
    Syn,
    SynAck,
    Fin,
    Ack,
    Rst,
    None,
}

impl Class {
    /// The column of a segment: its flag shape, invalid shapes having none.
    fn of(f: TcpFlags) -> Class {
        match f.shape() {
            TcpShape::Syn => Class::Syn,
            TcpShape::SynAck => Class::SynAck,
            TcpShape::FinAck => Class::Fin,
            TcpShape::Ack => Class::Ack,
            TcpShape::Rst => Class::Rst,
            _ => Class::None,
        }
    }

    fn from_u8(v: u8) -> Class {
        match v {
            0 => Class::Syn,
            1 => Class::SynAck,
            2 => Class::Fin,
            3 => Class::Ack,
            4 => Class::Rst,
            _ => Class::None,
        }
    }
}

/// Checks the flag combination of a segment ([`TcpFlags::shape`]): the valid shapes are Linux's;
/// every invalid shape gets its own reason (they are scan signatures).
pub fn check_flags(f: TcpFlags) -> Result<(), DropReason> {
    match f.shape() {
        TcpShape::Syn | TcpShape::SynAck | TcpShape::Ack | TcpShape::FinAck | TcpShape::Rst => {
            Ok(())
        }
        TcpShape::SynFin => Err(DropReason::TcpSynFin),
        TcpShape::SynRst => Err(DropReason::TcpSynRst),
        TcpShape::Null => Err(DropReason::TcpNull),
        TcpShape::Xmas => Err(DropReason::TcpXmas),
        TcpShape::FinNoAck => Err(DropReason::TcpFinNoAck),
        TcpShape::BadRst | TcpShape::Bad => Err(DropReason::TcpBadFlags),
    }
}

/// Linux's MAXACKWINCONST: how far below the receiver's end an ACK may lag.
const MAX_ACK_WINDOW: u32 = 66_000;

/// Per-direction flags.
mod pflag {
    /// Sent the window scale option in its SYN.
    pub const WSCALE: u8 = 1 << 0;
    /// Sent SACK-permitted in its SYN.
    pub const SACK_PERM: u8 = 1 << 1;
    /// `maxack` holds a value.
    pub const MAXACK_SET: u8 = 1 << 2;
    /// Has data the other side has not acknowledged yet.
    pub const UNACKED: u8 = 1 << 3;
    /// Sent a FIN that was accepted; `end` is just past it.
    pub const FIN_SENT: u8 = 1 << 4;
    /// Window violations are ignored rather than invalid (connection picked up mid-stream,
    /// window scale unknown).
    pub const LIBERAL: u8 = 1 << 5;
}

/// What one side has sent, as far as the other side's window goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Peer {
    /// Highest sequence number sent, plus one (`td_end`).
    end: Seq,
    /// Highest sequence number the other side allowed (`td_maxend`).
    maxend: Seq,
    /// Largest window the other side advertised to this side... as seen on this side's
    /// segments: the largest window this side advertised (`td_maxwin`). 0: nothing seen yet.
    maxwin: u32,
    /// Highest acknowledgment number this side sent (`td_maxack`).
    maxack: Seq,
    /// Window scale shift of this side.
    scale: u8,
    /// [`pflag`] bits.
    flags: u8,
}

impl Peer {
    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    /// Starts tracking from a SYN or SYN/ACK.
    fn init_from_syn(&mut self, seg: &TcpHeader, end: Seq) {
        self.end = end;
        self.maxend = end;
        self.maxwin = u32::from(seg.window).max(1);
        self.scale = seg.options.wscale.unwrap_or(0);
        let mut f = 0;
        if seg.options.wscale.is_some() {
            f |= pflag::WSCALE;
        }
        if seg.options.sack_permitted {
            f |= pflag::SACK_PERM;
        }
        self.flags = f;
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
}

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
    /// Sequence end of that segment (for resynchronising on an ignored SYN).
    last_end: Seq,
    /// Per direction: `[original, reply]`.
    peers: [Peer; 2],
}

/// Sequence number just past a segment: SYN and FIN count one.
fn seg_end(seg: &TcpHeader) -> Seq {
    seg.seq + seg.payload_len + u32::from(seg.flags.syn()) + u32::from(seg.flags.fin())
}

enum Cell {
    To(TcpState),
    Ignore,
    Invalid,
}

/// The transition table (Linux `tcp_conntracks`), one arm per cell group, each with its reason.
fn transition(dir: Dir, class: Class, old: TcpState) -> Cell {
    use Cell::{Ignore, Invalid, To};
    use TcpState::*;
    match (dir, class, old) {
        // A RST aborts the connection in any state (its sequence is checked separately).
        (_, Class::Rst, _) => To(Close),
        // Retransmitted SYN; late retransmitted SYN in simultaneous open.
        (Dir::Original, Class::Syn, SynSent) => To(SynSent),
        (_, Class::Syn, SynSent2) => To(SynSent2),
        // SYN while connected: we may be out of sync; the endpoint answers (challenge ACK,
        // SYN/ACK or RST) and we resynchronise from that.
        (Dir::Original, Class::Syn, _) => Ignore,
        // Simultaneous open: the other side also sent a SYN.
        (Dir::Reply, Class::Syn, SynSent) => To(SynSent2),
        // The server may not send a SYN in any other state.
        (Dir::Reply, Class::Syn, _) => Invalid,
        // Standard open (reply) and simultaneous open (either side).
        (Dir::Reply, Class::SynAck, SynSent) | (_, Class::SynAck, SynSent2) => To(SynRecv),
        // The client cannot send SYN then SYN/ACK.
        (Dir::Original, Class::SynAck, SynSent) => Invalid,
        // Retransmitted or late SYN/ACK, or one answering an ignored SYN.
        (_, Class::SynAck, _) => Ignore,
        // No FIN before the handshake has an answer.
        (_, Class::Fin, SynSent | SynSent2) => Invalid,
        // Close started.
        (_, Class::Fin, SynRecv | Established) => To(FinWait),
        // FIN seen in both directions (or retransmitted).
        (_, Class::Fin, FinWait | CloseWait | LastAck) => To(LastAck),
        (_, Class::Fin, TimeWait) => To(TimeWait),
        (_, Class::Fin, Close) => To(Close),
        // ACK before the SYN/ACK: invalid from the client, maybe a half-open connection from
        // the server.
        (Dir::Original, Class::Ack, SynSent | SynSent2) => Invalid,
        (Dir::Reply, Class::Ack, SynSent | SynSent2) => Ignore,
        // Handshake completed (the server's ACK may answer a late resent SYN).
        (Dir::Original, Class::Ack, SynRecv) => To(Established),
        (Dir::Reply, Class::Ack, SynRecv) => To(SynRecv),
        (_, Class::Ack, Established) => To(Established),
        // Normal close request answered by ACK.
        (_, Class::Ack, FinWait | CloseWait) => To(CloseWait),
        // Last ACK seen; retransmitted last ACK.
        (_, Class::Ack, LastAck | TimeWait) => To(TimeWait),
        (_, Class::Ack, Close) => To(Close),
        // No SYN, FIN, ACK or RST: never valid (rejected earlier by the flag check).
        (_, Class::None, _) => Invalid,
    }
}

/// The drop reason of an invalid table cell.
fn invalid_reason(dir: Dir, class: Class) -> DropReason {
    match (dir, class) {
        (_, Class::SynAck) => DropReason::UnexpectedSynAck,
        (_, Class::Syn) => DropReason::UnexpectedSyn,
        (_, Class::Fin) => DropReason::UnexpectedFin,
        (_, Class::Ack) => DropReason::UnexpectedAck,
        _ => DropReason::TcpBadFlags,
    }
}

/// Outcome of the window check.
enum Window {
    Accept,
    Ignore,
    Invalid(DropReason),
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

    /// The next sequence number of each side: `(original, reply)`.
    pub fn next_seqs(&self) -> (Seq, Seq) {
        (self.peers[0].end, self.peers[1].end)
    }

    /// Timeout for the current state, capped while data is unacknowledged.
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
        self.check_closed(dir, class, seg)?;
        let mut new = match transition(dir, class, old) {
            Cell::To(s) => s,
            Cell::Invalid => return Err(invalid_reason(dir, class)),
            Cell::Ignore => {
                if !self.resync(dir, class, seg) {
                    self.note_last(dir, class, seg);
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
        // The ignored SYN's window is not kept (entries stay small): the window grows from
        // the next segments, as the check's lower bound only needs it to be non-zero.
        self.peers[last_dir.idx()] = Peer {
            end: self.last_end,
            maxend: self.last_end,
            maxwin: 1,
            ..Peer::default()
        };
        self.peers[dir.idx()] = Peer::default();
        self.state = TcpState::SynSent;
        true
    }

    fn note_last(&mut self, dir: Dir, class: Class, seg: &TcpHeader) {
        self.last_dir = dir as u8;
        self.last_class = class as u8;
        self.last_end = seg_end(seg);
    }

    /// RST: an exact sequence number closes; inside the window passes without closing (the
    /// endpoint answers with a challenge ACK, RFC 5961); anything else is dropped.
    fn check_rst(&mut self, dir: Dir, old: TcpState, seg: &TcpHeader) -> Result<Step, DropReason> {
        let s = self.peers[dir.idx()];
        let r = self.peers[dir.flip().idx()];
        let handshake = matches!(old, TcpState::SynSent | TcpState::SynSent2);
        let exact = if handshake && s.maxwin == 0 {
            // Answering the SYN: acceptable when it acknowledges the SYN (RFC 9293 §3.10.7.3).
            seg.flags.ack() && seg.ack == r.end
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
        if in_window || s.has(pflag::LIBERAL) {
            Ok(Step::Ignore)
        } else {
            Err(DropReason::RstOutOfWindow)
        }
    }

    /// The van Rooij window check (Linux `tcp_in_window`), learning from valid segments.
    fn in_window(&mut self, dir: Dir, state: TcpState, seg: &TcpHeader) -> Window {
        let [orig, reply] = &mut self.peers;
        let (sender, receiver) = match dir {
            Dir::Original => (orig, reply),
            Dir::Reply => (reply, orig),
        };
        let f = seg.flags;
        let mut seq = seg.seq;
        let mut ack = seg.ack;
        let mut sack = ack;
        if receiver.has(pflag::SACK_PERM) {
            if let Some(edge) = seg.options.sack_right_edge {
                if edge.after(sack) {
                    sack = edge;
                }
            }
        }
        let mut end = seg_end(seg);
        let win = u32::from(seg.window);

        if sender.maxwin == 0 {
            if f.syn() {
                // SYN/ACK answering the SYN, or SYN from the reply side in a simultaneous open.
                sender.init_from_syn(seg, end);
                // RFC 7323: window scaling only when both sides offer it.
                if !(sender.has(pflag::WSCALE) && receiver.has(pflag::WSCALE)) {
                    sender.scale = 0;
                    receiver.scale = 0;
                }
                if !f.ack() {
                    return Window::Accept;
                }
            } else {
                // First segment from this side of a connection picked up mid-stream.
                sender.end = end;
                let swin = win << sender.scale;
                sender.maxwin = swin.max(1);
                sender.maxend = end + sender.maxwin;
                if receiver.maxwin == 0 {
                    receiver.end = sack;
                    receiver.maxend = sack;
                } else if sack == receiver.end + 1 {
                    // Likely the answer to a keepalive.
                    receiver.end = receiver.end + 1;
                }
            }
        } else if f.syn()
            && end.after(sender.end)
            && ((state == TcpState::SynSent && dir == Dir::Original)
                || (state == TcpState::SynRecv && dir == Dir::Reply))
        {
            // RFC 9293: a reinitialised TCP may reuse the tuple with a higher ISN.
            sender.init_from_syn(seg, end);
        }

        if !f.ack() || (f.rst() && ack == Seq(0)) {
            // No ACK (or a broken stack's RST+ACK with ack 0): pretend it acknowledges all.
            ack = receiver.end;
            sack = ack;
        }
        if seq == end && !f.rst() {
            // No data: only the ACK is checked (keepalives with seq = next - 1 land here).
            seq = sender.end;
            end = seq;
        }

        let liberal = sender.has(pflag::LIBERAL);
        if !seq.before(sender.maxend + 1) && !liberal {
            return Window::Invalid(DropReason::SeqAboveWindow);
        }
        if !end.after(sender.end - receiver.maxwin - 1) {
            // Already acknowledged data retransmitted.
            return Window::Ignore;
        }
        if !sack.before(receiver.end + 1) && !liberal {
            return Window::Invalid(DropReason::AckUnsentData);
        }
        let max_ack_window = sender.maxwin.max(MAX_ACK_WINDOW);
        if !sack.after(receiver.end - max_ack_window - 1) {
            // An overly delayed ACK: a segment sent before later ACKs, reordered behind them.
            // Nothing is learned from its ACK, but new data it carries passed the sequence
            // checks and the receiver will acknowledge it: remember where it ends.
            if end.after(sender.end) && !f.rst() {
                sender.end = end;
                sender.flags |= pflag::UNACKED;
                return Window::Accept;
            }
            return Window::Ignore;
        }
        if liberal && (!seq.before(sender.maxend + 1) || sack.after(receiver.end)) {
            // Picked-up connection with an unknown window scale: pass, widen, learn the ends.
            sender.maxwin = sender.maxwin.max(end - sender.end);
            if end.after(sender.end) {
                sender.end = end;
                sender.maxend = end + sender.maxwin;
            }
            if sack.after(receiver.end) {
                receiver.end = sack;
            }
            return Window::Accept;
        }

        let win = if f.syn() { win } else { win << sender.scale };
        // Update the sender.
        let swin = win.wrapping_add(sack - ack);
        if sender.maxwin < swin {
            sender.maxwin = swin;
        }
        if end.after(sender.end) {
            sender.end = end;
            sender.flags |= pflag::UNACKED;
        }
        if f.ack() {
            if !sender.has(pflag::MAXACK_SET) || ack.after(sender.maxack) {
                sender.maxack = ack;
            }
            sender.flags |= pflag::MAXACK_SET;
        }
        // Update the receiver.
        if receiver.maxwin != 0 && end.after(sender.maxend) {
            receiver.maxwin = receiver.maxwin.wrapping_add(end - sender.maxend);
        }
        if (sack + win).after(receiver.maxend - 1) {
            receiver.maxend = sack + win;
            if win == 0 {
                // Room for a zero-window probe.
                receiver.maxend = receiver.maxend + 1;
            }
        }
        if ack == receiver.end {
            receiver.flags &= !pflag::UNACKED;
        }
        Window::Accept
    }
}

#[cfg(test)]
mod tests;
