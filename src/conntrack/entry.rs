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

/// Which entries early drop takes first when the table is full.
///
/// Linux evicts only unassured entries when a new one finds the table full, and TCP
/// connections closing (`tcp_can_early_drop`) in its garbage collection once the table is 95 %
/// full. statewall does both when the table is full, in this order, so that a flood of
/// half-open flows makes room from itself before it takes a connection whose data still flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Victim {
    /// Taken first: unassured flows (half-open handshakes, datagram flows that are not a
    /// stream) and TCP connections closed (TIME_WAIT, CLOSE), which carry nothing more.
    First,
    /// Taken only when no first victim is left: assured TCP connections in their teardown
    /// (FIN_WAIT, CLOSE_WAIT, LAST_ACK), whose data may still flow (the answer to a request
    /// whose sender half-closed) or whose last FIN and ACK are on their way.
    Then,
}

impl Victim {
    /// Both, in the order early drop takes them.
    pub const ORDER: [Victim; 2] = [Victim::First, Victim::Then];

    /// Index of the queue ([`super::Table`]).
    pub fn idx(self) -> usize {
        self as usize
    }
}

/// Protocol-specific part of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoState {
    /// TCP: state machine and windows.
    Tcp(TcpConn),
    /// UDP, ICMP echo and other protocols: when the flow opened (a flow still busy two
    /// seconds later, both ways, is a stream: assured).
    Datagram(Tick),
}

/// Entry flags.
pub mod flags {
    /// The endpoint with the lower (address, port) opened the connection.
    pub const ORIG_IS_LO: u8 = 1 << 0;
    /// A packet from the reply direction has been seen.
    pub const SEEN_REPLY: u8 = 1 << 1;
    /// The connection completed its handshake, or a datagram flow became a stream: evicted
    /// early only once it closes (TCP).
    pub const ASSURED: u8 = 1 << 2;
    /// On the kernel fast path: validated, its accepted packets carry the FASTPATH bit, and
    /// the kernel forwards its middle without statewall ([`crate::marks`],
    /// [`super::Offload`]). (Bit 3 said "picked up, not yet assured", which is
    /// [`BLIND`] without [`ASSURED`]: see [`super::Conn::picking_up`].)
    pub const OFFLOADED: u8 = 1 << 3;
    /// Counted against its originator's per-source limit.
    pub const COUNTED: u8 = 1 << 4;
    /// Closed by a rule recheck on reload or killed by an operator: every further packet is
    /// dropped.
    pub const REVOKED: u8 = 1 << 5;
    /// Adopted mid-stream by blind pickup (no handshake seen): a SYN on it is a new
    /// connection.
    pub const BLIND: u8 = 1 << 6;
    /// Adopted from the kernel's conntrack table (a restart, a standby) and used by no packet
    /// since: it follows the kernel's updates and goes with the kernel's entry, and its first
    /// packet is checked against the rules ([`crate::adopt`]).
    pub const KERNEL: u8 = 1 << 7;
}

/// The rule that admitted a connection: its position in the rule set of generation
/// `ruleset` (the engine numbers the rule sets it is given; conntrack only stores the tag).
/// Packed (3 bytes, alignment 1) so that it fits in what was padding in [`Conn`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C, packed)]
pub struct RuleTag {
    /// 1 + the rule's index; 0: no rule (the default policy, or a flow adopted mid-stream);
    /// `u16::MAX`: an index too large to store.
    pub rule: u16,
    /// Generation of the rule set (wraps).
    pub ruleset: u8,
}

impl RuleTag {
    /// The tag of rule `index` (0-based) of rule set `ruleset`; `None` for "no rule".
    pub fn new(index: Option<usize>, ruleset: u8) -> RuleTag {
        let rule = index.map_or(0, |i| u16::try_from(i + 1).unwrap_or(u16::MAX));
        RuleTag { rule, ruleset }
    }

    /// The rule's 0-based index, when there is one and it could be stored.
    pub fn index(self) -> Option<usize> {
        (self.rule != 0 && self.rule != u16::MAX).then(|| usize::from(self.rule) - 1)
    }
}

/// Packets and bytes of one connection per direction, as statewall counted them (accepted
/// packets, IP length).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Counts {
    /// Packets from the originator.
    pub orig_packets: u64,
    /// Bytes from the originator.
    pub orig_bytes: u64,
    /// Packets from the responder.
    pub reply_packets: u64,
    /// Bytes from the responder.
    pub reply_bytes: u64,
}

/// The low 32 bits of a connection's counters, in the entry: `[packets, bytes]` per
/// direction. A counter that wraps carries into the table's side map (the few connections that move 4 GiB or 4 G packets), so every entry pays 16
/// bytes and the counts stay exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally(pub [[u32; 2]; 2]);

impl Tally {
    /// One packet of `len` bytes in direction `dir`; returns which counters wrapped
    /// (`[packets, bytes]`).
    pub fn add(&mut self, dir: Dir, len: u32) -> [bool; 2] {
        let d = &mut self.0[dir.idx()];
        let (p, wrapped_p) = d[0].overflowing_add(1);
        let (b, wrapped_b) = d[1].overflowing_add(len);
        *d = [p, b];
        [wrapped_p, wrapped_b]
    }

    /// The full counts, with the high words `high` (`[[packets, bytes]; 2]`).
    pub fn counts(&self, high: [[u32; 2]; 2]) -> Counts {
        let full = |d: usize, i: usize| (u64::from(high[d][i]) << 32) | u64::from(self.0[d][i]);
        Counts {
            orig_packets: full(0, 0),
            orig_bytes: full(0, 1),
            reply_packets: full(1, 0),
            reply_bytes: full(1, 1),
        }
    }
}

/// One tracked connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn {
    /// When the entry expires unless refreshed.
    pub expires: Tick,
    /// [`flags`] bits.
    pub flags: u8,
    /// The rule that admitted it.
    pub rule: RuleTag,
    /// Protocol state.
    pub proto: ProtoState,
    /// Packets and bytes per direction (low words).
    pub tally: Tally,
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

    /// Adopted mid-stream by blind pickup and not assured yet (the other end not seen): its
    /// timeout stays capped at the pickup timeout.
    pub fn picking_up(&self) -> bool {
        self.has(flags::BLIND) && !self.has(flags::ASSURED)
    }

    /// Reported state.
    pub fn state(&self) -> ConnState {
        match &self.proto {
            ProtoState::Tcp(t) => ConnState::Tcp(t.state),
            ProtoState::Datagram(_) if self.has(flags::SEEN_REPLY) => ConnState::Replied,
            ProtoState::Datagram(_) => ConnState::Unreplied,
        }
    }

    /// When early drop may take the entry when the table is full ([`Victim`]): an unassured
    /// flow, or a TCP connection closing or closed (Linux's `tcp_can_early_drop`: FIN_WAIT,
    /// CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE), whatever it was before; `None`: never (an
    /// assured flow that is open).
    pub fn victim(&self) -> Option<Victim> {
        if !self.has(flags::ASSURED) {
            return Some(Victim::First);
        }
        match &self.proto {
            ProtoState::Tcp(t) => match t.state {
                TcpState::TimeWait | TcpState::Close => Some(Victim::First),
                TcpState::FinWait | TcpState::CloseWait | TcpState::LastAck => Some(Victim::Then),
                _ => None,
            },
            ProtoState::Datagram(_) => None,
        }
    }

    /// Whether the entry counts against its originator's per-source limit (TIME_WAIT and
    /// closed TCP connections do not).
    pub fn should_count(&self) -> bool {
        match &self.proto {
            ProtoState::Tcp(t) => !matches!(t.state, TcpState::TimeWait | TcpState::Close),
            ProtoState::Datagram(_) => true,
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
        // about half full (2^21 buckets): keep the IPv4 slot (key + entry) at 88 bytes
        // (89 B with its control byte x 2^21 = 187 B per connection). The rule tag fits in
        // what was padding; the per-direction counters take the 16 bytes left.
        assert!(
            std::mem::size_of::<Conn>() <= 72,
            "{}",
            std::mem::size_of::<Conn>()
        );
        assert!(std::mem::size_of::<(Key<[u8; 4]>, Conn)>() <= 88);
        assert!(std::mem::size_of::<(Key<[u8; 16]>, Conn)>() <= 112);
    }

    #[test]
    fn tallies_wrap_into_high_words() {
        let mut t = Tally::default();
        assert_eq!(t.add(Dir::Original, 100), [false, false]);
        t.0[1] = [u32::MAX, u32::MAX - 10];
        assert_eq!(t.add(Dir::Reply, 20), [true, true]);
        let c = t.counts([[0, 0], [1, 1]]);
        assert_eq!((c.orig_packets, c.orig_bytes), (1, 100));
        assert_eq!(c.reply_packets, 1 << 32);
        assert_eq!(c.reply_bytes, u64::from(u32::MAX) - 10 + 20);
    }

    #[test]
    fn rule_tags_keep_the_index_when_they_can() {
        assert_eq!(RuleTag::new(None, 3).index(), None);
        assert_eq!(RuleTag::new(Some(0), 3).index(), Some(0));
        assert_eq!(RuleTag::new(Some(41), 3).index(), Some(41));
        assert_eq!(RuleTag::new(Some(1 << 20), 3).index(), None);
    }
}
