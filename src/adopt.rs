//! Flows adopted from the kernel's conntrack table: what the table says about one flow that
//! carries statewall's ADMITTED mark ([`crate::marks`]), in statewall's own terms.
//!
//! The kernel table holds every flow statewall admitted (the mark is saved there from the
//! verdicts) with its TCP state and window scales, and conntrackd replicates it to a standby.
//! After a restart, and on a standby as replicated entries arrive, statewall adopts exactly
//! those flows: their tuple, state, window scales and SACK permission come from the kernel,
//! their windows are learned from the next segments (the kernel does the same with an entry
//! conntrackd injected). Nothing else is adopted: a mid-stream segment of a flow the kernel does
//! not hold with the mark belongs to no connection. An adopted flow's first packet is checked
//! against the rules in force, in the flow's own orientation and with that packet's interfaces
//! (which the kernel table does not record): a flow they refuse is closed, never adopted.
//!
//! This module is data only; [`crate::io::kernel_flows`] reads the kernel table into it and the
//! engine adopts from it.

use std::net::IpAddr;

use crate::conntrack::TcpState;

/// One flow of the kernel table with the ADMITTED bit, as statewall's hook sees it: under NAT
/// the originator is the original tuple's source and the responder the reply tuple's source
/// (statewall's chain in the filter table sees packets after DNAT and before SNAT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelFlow {
    /// IP protocol number.
    pub proto: u8,
    /// The endpoint that sent the first packet: address and port (the echo identifier for
    /// ICMP echo, 0 for protocols without ports).
    pub orig: (IpAddr, u16),
    /// The other endpoint.
    pub resp: (IpAddr, u16),
    /// TCP: what the kernel's TCP tracker knows.
    pub tcp: Option<KernelTcp>,
    /// Packets were seen both ways.
    pub seen_reply: bool,
    /// The kernel assured the flow (TCP handshake done, or a UDP stream).
    pub assured: bool,
    /// Seconds until the kernel's entry expires, when it says.
    pub timeout: Option<u32>,
}

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

/// What adopting one flow did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// A new entry.
    Adopted,
    /// An entry adopted earlier and not used since was brought up to date.
    Refreshed,
    /// statewall tracks the flow already (its own entry stays as it is).
    Known,
    /// The table has no room (table or per-source limit).
    NoRoom,
    /// Not a flow statewall can track (a TCP flow without its TCP state, mixed families).
    Unsupported,
}

/// Totals of one adoption pass (a dump of the kernel table).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdoptionReport {
    /// Entries the kernel reported with the ADMITTED bit.
    pub seen: u64,
    /// New entries.
    pub adopted: u64,
    /// Earlier adoptions brought up to date.
    pub refreshed: u64,
    /// Already tracked by statewall.
    pub known: u64,
    /// No room in the table.
    pub no_room: u64,
    /// Entries statewall cannot adopt (a protocol state it does not track).
    pub skipped: u64,
}

impl AdoptionReport {
    /// Counts one outcome.
    pub fn count(&mut self, a: Adoption) {
        match a {
            Adoption::Adopted => self.adopted += 1,
            Adoption::Refreshed => self.refreshed += 1,
            Adoption::Known => self.known += 1,
            Adoption::NoRoom => self.no_room += 1,
            Adoption::Unsupported => self.skipped += 1,
        }
    }
}

impl std::fmt::Display for AdoptionReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seen={} adopted={} refreshed={} known={} no_room={} skipped={}",
            self.seen, self.adopted, self.refreshed, self.known, self.no_room, self.skipped
        )
    }
}
