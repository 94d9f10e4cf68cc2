//! The window check (Guido van Rooij's scheme, Linux `tcp_in_window`): what each side has
//! sent and may send, checked and learned from every valid segment.
//!
//! ```text
//! I.   Upper bound for valid data:  seq <= sender.maxend
//! II.  Lower bound for valid data:  seq + len >= sender.end - receiver.maxwin
//! III. Upper bound for valid ack:   ack <= receiver.end
//! IV.  Lower bound for valid ack:   ack >= receiver.end - max(sender.maxwin, 66000)
//! ```
//!
//! Segments breaking I or III are *invalid*; segments breaking II or IV are late
//! retransmissions or overly delayed ACKs: they are *ignored* (passed, nothing learned).

use super::{TcpConn, TcpState};
use crate::conntrack::Dir;
use crate::packet::{Seq, TcpHeader};
use crate::verdict::DropReason;

/// Linux's MAXACKWINCONST: how far below the receiver's end an ACK may lag.
const MAX_ACK_WINDOW: u32 = 66_000;

/// Per-direction flags.
pub(super) mod pflag {
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
    /// `end` was learned after an adoption and may lag behind what this side had sent before
    /// (its first segment seen was a retransmission): an ACK of the other side beyond `end`,
    /// by at most that side's window, moves `end` up once instead of being invalid.
    pub const LAGGING: u8 = 1 << 6;
    /// This side's `end` is only a lower bound, what the other side acknowledged when the
    /// connection came back from the kernel fast path (it may have sent more that statewall
    /// never saw): an ACK beyond it, within the window the other side advertised, moves it
    /// forward, until this side sends a segment itself.
    pub const RESUMED: u8 = 1 << 7;
}

/// What one side has sent, as far as the other side's window goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Peer {
    /// Highest sequence number sent, plus one (`td_end`).
    pub(super) end: Seq,
    /// Highest sequence number the other side allowed (`td_maxend`).
    pub(super) maxend: Seq,
    /// Largest window the other side advertised to this side... as seen on this side's
    /// segments: the largest window this side advertised (`td_maxwin`). 0: nothing seen yet.
    pub(super) maxwin: u32,
    /// Highest acknowledgment number this side sent (`td_maxack`).
    pub(super) maxack: Seq,
    /// Window scale shift of this side.
    pub(super) scale: u8,
    /// [`pflag`] bits.
    pub(super) flags: u8,
    /// Segments accepted from this side in ESTABLISHED since the handshake or the return from
    /// the fast path (saturating; the fast path waits for a few each way). In what was padding.
    pub(super) segments: u8,
}

impl Peer {
    pub(super) fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    /// Starts tracking from a SYN or SYN/ACK.
    pub(super) fn init_from_syn(&mut self, seg: &TcpHeader, end: Seq) {
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

/// Sequence number just past a segment: SYN and FIN count one.
pub(super) fn seg_end(seg: &TcpHeader) -> Seq {
    seg.seq + seg.payload_len + u32::from(seg.flags.syn()) + u32::from(seg.flags.fin())
}

/// A segment of a connection picked up mid-stream (window scale unknown) that broke a bound:
/// passed, and the ends widened to what it shows.
fn liberal_learn(sender: &mut Peer, receiver: &mut Peer, end: Seq, sack: Seq) -> Window {
    sender.maxwin = sender.maxwin.max(end - sender.end);
    if end.after(sender.end) {
        sender.end = end;
        sender.maxend = end + sender.maxwin;
    }
    if sack.after(receiver.end) {
        receiver.end = sack;
    }
    Window::Accept
}

/// Outcome of the window check.
pub(super) enum Window {
    Accept,
    Ignore,
    Invalid(DropReason),
}

impl TcpConn {
    /// Whether `dir`'s side may have sent a segment starting at `seq`: what an ICMP error
    /// quoting such a segment must show (pf's check in `pf_test_state_icmp`). The segment
    /// starts at most at the highest sequence number the receiver allowed, and at least the
    /// largest window the receiver advertised below the sender's end (a segment in flight or
    /// retransmitted). A side that has sent nothing has nothing to be quoted.
    pub fn may_have_sent(&self, dir: Dir, seq: Seq) -> bool {
        let [orig, reply] = &self.peers;
        let (sender, receiver) = match dir {
            Dir::Original => (orig, reply),
            Dir::Reply => (reply, orig),
        };
        if sender.maxwin == 0 {
            return false;
        }
        let lowest = sender.end - receiver.maxwin.max(1);
        !seq.before(lowest) && !seq.after(sender.maxend)
    }

    /// A later fragment of a segment `dir`'s side sent passed: the segment reaches `end`.
    pub fn extend_sent(&mut self, dir: Dir, end: Seq) {
        let sender = &mut self.peers[dir as usize];
        if end.after(sender.end) {
            sender.end = end;
            sender.flags |= pflag::UNACKED;
        }
    }

    /// The van Rooij window check (Linux `tcp_in_window`), learning from valid segments.
    pub(super) fn in_window(&mut self, dir: Dir, state: TcpState, seg: &TcpHeader) -> Window {
        let stale = self.stale();
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
                // First segment from this side of a connection picked up mid-stream (or back
                // from the fast path).
                sender.flags &= !pflag::RESUMED;
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
            && matches!(state, TcpState::SynSent | TcpState::SynRecv)
        {
            // RFC 9293: a reinitialised TCP may reuse the tuple with a higher ISN; its
            // retransmitted SYN (or SYN/ACK) may differ in sequence number and options.
            sender.init_from_syn(seg, end);
            if dir == Dir::Reply && !(sender.has(pflag::WSCALE) && receiver.has(pflag::WSCALE)) {
                sender.scale = 0;
                receiver.scale = 0;
            }
            if dir == Dir::Reply && !f.ack() {
                return Window::Accept;
            }
        }

        if !f.ack() || (f.rst() && ack == Seq(0)) {
            // No ACK (or a broken stack's RST+ACK with ack 0): pretend it acknowledges all.
            ack = receiver.end;
            sack = ack;
        }
        if f.rst() && seq == Seq(0) && state == TcpState::SynSent {
            // A RST answering the SYN.
            seq = sender.end;
            end = seq;
        }

        if receiver.has(pflag::RESUMED) && sack.after(receiver.end) && !sack.after(receiver.maxend)
        {
            // Back from the fast path: the receiver sent data statewall did not see (the kernel
            // forwarded it). It fit in the window this side advertised (`receiver.maxend`, from
            // this side's segments since the resume), so an ACK beyond that is still unsent data.
            receiver.end = sack;
        }
        if stale && sender.maxwin != 0 && receiver.maxwin != 0 {
            // Stale windows (`TcpConn::go_stale`): the flow went on without statewall, so what
            // it knew are lower bounds. A segment beyond them shows where each side is now.
            if sack.after(receiver.end) {
                receiver.end = sack;
                if sack.after(receiver.maxend) {
                    receiver.maxend = sack;
                }
            }
            if end.after(sender.maxend) {
                sender.maxend = end;
            }
        }
        let liberal = sender.has(pflag::LIBERAL);
        let max_ack_window = sender.maxwin.max(MAX_ACK_WINDOW);
        if !sack.before(receiver.end + 1) && receiver.has(pflag::LAGGING) {
            // An adopted connection whose receiver was first seen retransmitting: the ACK
            // acknowledges data that passed before the adoption. Within the sender's window,
            // that is where the receiver's data ends.
            if (sack - receiver.end) <= max_ack_window {
                receiver.end = sack;
            }
            receiver.flags &= !pflag::LAGGING;
        }
        let ack_ok = sack.after(receiver.end - max_ack_window - 1);
        if !seq.before(sender.maxend + 1) {
            // I fails: the segment starts beyond what the receiver allowed.
            let overshot = (end - sender.maxend).wrapping_add(1);
            let in_recv_win = receiver.maxwin != 0 && end.after(sender.end - receiver.maxwin - 1);
            if in_recv_win && ack_ok && overshot <= receiver.maxwin && sack.before(receiver.end + 1)
            {
                // Linux's work-around for TCPs that send more than the receiver's window
                // allows: passed without learning, except that the sender's end moves, so the
                // receiver's ACK of these bytes is valid.
                if !liberal {
                    sender.end = end;
                    sender.flags |= pflag::UNACKED;
                    return Window::Ignore;
                }
            } else if !liberal {
                return Window::Invalid(DropReason::SeqAboveWindow);
            }
            return liberal_learn(sender, receiver, end, sack);
        }
        if !sack.before(receiver.end + 1) {
            // III fails: it acknowledges data never sent.
            if !liberal {
                return Window::Invalid(DropReason::AckUnsentData);
            }
            return liberal_learn(sender, receiver, end, sack);
        }
        if receiver.maxwin != 0 && !end.after(sender.end - receiver.maxwin - 1) {
            // II fails: already acknowledged data retransmitted.
            return Window::Ignore;
        }
        if !ack_ok {
            // IV fails: an overly delayed ACK, a segment sent before later ACKs and reordered
            // behind them. Nothing is learned from its ACK; but new data it carries passed the
            // sequence checks and the receiver will acknowledge it: its end is remembered
            // (Linux ignores it whole, and then calls that ACK invalid).
            if end.after(sender.end) && !f.rst() {
                sender.end = end;
                sender.flags |= pflag::UNACKED;
                return Window::Accept;
            }
            return Window::Ignore;
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
