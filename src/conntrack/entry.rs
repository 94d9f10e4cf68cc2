//! One tracked connection: its entry flags, its protocol state, and the state it reports.

use super::tcp::{TcpConn, TcpState};
use super::Dir;
use crate::time::Tick;

/// State of a tracked connection, as reported in decisions and listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnState {
    /// A TCP connection in the given state.
    Tcp(TcpState),
    /// A UDP, ICMP or other flow that has seen packets in one direction only.
    Unreplied,
    /// A UDP, ICMP or other flow that has seen packets in both directions.
    Replied,
}

impl std::fmt::Display for ConnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnState::Tcp(s) => s.fmt(f),
            ConnState::Unreplied => f.write_str("UNREPLIED"),
            ConnState::Replied => f.write_str("REPLIED"),
        }
    }
}

/// Protocol-specific part of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoState {
    /// TCP: state machine and windows.
    Tcp(TcpConn),
    /// UDP, ICMP echo and other protocols: only the entry flags matter.
    Datagram,
}

/// Entry flags.
pub mod flags {
    /// The endpoint with the lower (address, port) opened the connection.
    pub const ORIG_IS_LO: u8 = 1 << 0;
    /// A packet from the reply direction has been seen.
    pub const SEEN_REPLY: u8 = 1 << 1;
    /// The connection completed its handshake (never early-dropped).
    pub const ASSURED: u8 = 1 << 2;
    /// Adopted mid-stream in pickup mode; timeout capped until the other end is seen.
    pub const PICKUP: u8 = 1 << 3;
    /// Counted against its originator's per-source limit.
    pub const COUNTED: u8 = 1 << 4;
    /// Closed by a rule recheck on reload: every further packet is dropped.
    pub const REVOKED: u8 = 1 << 5;
    /// Adopted mid-stream by blind pickup (no handshake seen): a SYN on it is a new
    /// connection.
    pub const BLIND: u8 = 1 << 6;
    /// On the kernel fast path: validated, its accepted packets carry the FASTPATH bit, and
    /// the kernel forwards its middle without statewall ([`crate::marks`],
    /// [`super::Offload`]).
    pub const OFFLOADED: u8 = 1 << 7;
}

/// One tracked connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn {
    /// When the entry expires unless refreshed.
    pub expires: Tick,
    /// [`flags`] bits.
    pub flags: u8,
    /// Protocol state.
    pub proto: ProtoState,
}

impl Conn {
    /// Direction of a packet whose source is the key's low endpoint (`from_lo`) or not.
    pub fn dir(&self, from_lo: bool) -> Dir {
        if from_lo == (self.flags & flags::ORIG_IS_LO != 0) {
            Dir::Original
        } else {
            Dir::Reply
        }
    }

    /// Whether a flag is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Reported state.
    pub fn state(&self) -> ConnState {
        match &self.proto {
            ProtoState::Tcp(t) => ConnState::Tcp(t.state),
            ProtoState::Datagram if self.has(flags::SEEN_REPLY) => ConnState::Replied,
            ProtoState::Datagram => ConnState::Unreplied,
        }
    }

    /// Whether the entry may be evicted early when the table is full.
    pub fn early_droppable(&self) -> bool {
        !self.has(flags::ASSURED)
    }

    /// Whether the entry counts against its originator's per-source limit (TIME_WAIT and
    /// closed TCP connections do not).
    pub fn should_count(&self) -> bool {
        match &self.proto {
            ProtoState::Tcp(t) => !matches!(t.state, TcpState::TimeWait | TcpState::Close),
            ProtoState::Datagram => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::Key;

    #[test]
    fn entries_stay_small() {
        // The memory budget is 192 bytes per connection at 1 M entries, with the hash table
        // about half full: keep the IPv4 slot (key + entry) at 72 bytes.
        assert!(
            std::mem::size_of::<Conn>() <= 56,
            "{}",
            std::mem::size_of::<Conn>()
        );
        assert!(std::mem::size_of::<(Key<[u8; 4]>, Conn)>() <= 72);
        assert!(std::mem::size_of::<(Key<[u8; 16]>, Conn)>() <= 96);
    }
}
