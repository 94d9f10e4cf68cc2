//! The transition table of the TCP state machine (Linux `tcp_conntracks`): a segment's flag
//! class is the column, the connection's state the row, and each cell says where the
//! connection goes, that the segment is ignored, or that it is invalid. Every cell group has
//! its reason.

use super::TcpState;
use crate::conntrack::Dir;
use crate::packet::{TcpFlags, TcpShape};
use crate::verdict::DropReason;

/// The flag class of a segment, the column index of the transition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Class {
    Syn,
    SynAck,
    Fin,
    Ack,
    Rst,
    None,
}

impl Class {
    /// The column of a segment: its flag shape, invalid shapes having none.
    #[inline]
    pub(super) fn of(f: TcpFlags) -> Class {
        match f.shape() {
            TcpShape::Syn => Class::Syn,
            TcpShape::SynAck => Class::SynAck,
            TcpShape::FinAck => Class::Fin,
            TcpShape::Ack => Class::Ack,
            TcpShape::Rst => Class::Rst,
            _ => Class::None,
        }
    }

    pub(super) fn from_u8(v: u8) -> Class {
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
#[inline]
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

pub(super) enum Cell {
    To(TcpState),
    Ignore,
    Invalid,
}

/// The transition table (Linux `tcp_conntracks`), one arm per cell group, each with its reason.
pub(super) fn transition(dir: Dir, class: Class, old: TcpState) -> Cell {
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
        // Late retransmitted SYN/ACK in a simultaneous open.
        (Dir::Original, Class::SynAck, SynRecv) => To(SynRecv),
        // The client cannot send SYN then SYN/ACK, nor a SYN/ACK in any other state.
        (Dir::Original, Class::SynAck, _) => Invalid,
        // Retransmitted or late SYN/ACK, or one answering an ignored SYN.
        (Dir::Reply, Class::SynAck, _) => Ignore,
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
pub(super) fn invalid_reason(dir: Dir, class: Class) -> DropReason {
    match (dir, class) {
        (_, Class::SynAck) => DropReason::UnexpectedSynAck,
        (_, Class::Syn) => DropReason::UnexpectedSyn,
        (_, Class::Fin) => DropReason::UnexpectedFin,
        (_, Class::Ack) => DropReason::UnexpectedAck,
        _ => DropReason::TcpBadFlags,
    }
}
