//! Typed values of the kernel's conntrack table, as ctnetlink reports them.

use std::fmt;
use std::net::IpAddr;

/// The layer-4 part of a conntrack tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L4 {
    /// TCP ports.
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// UDP ports.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// ICMP (IPv4) echo-style key.
    Icmp {
        /// Identifier.
        id: u16,
        /// ICMP type.
        icmp_type: u8,
        /// ICMP code.
        code: u8,
    },
    /// ICMPv6 echo-style key.
    Icmpv6 {
        /// Identifier.
        id: u16,
        /// ICMPv6 type.
        icmp_type: u8,
        /// ICMPv6 code.
        code: u8,
    },
    /// Any other protocol (conntrack keys it by addresses only, or by fields statewall does
    /// not read).
    Other {
        /// IP protocol number.
        protocol: u8,
    },
}

impl L4 {
    /// IP protocol number.
    pub fn protocol(&self) -> u8 {
        match self {
            L4::Tcp { .. } => 6,
            L4::Udp { .. } => 17,
            L4::Icmp { .. } => 1,
            L4::Icmpv6 { .. } => 58,
            L4::Other { protocol } => *protocol,
        }
    }
}

/// One direction of a connection: addresses (both of one family) and layer-4 key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Protocol and ports or ICMP key.
    pub l4: L4,
}

impl Tuple {
    /// Whether this is an IPv6 tuple.
    pub fn is_ipv6(&self) -> bool {
        self.src.is_ipv6()
    }
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.l4 {
            L4::Tcp { src_port, dst_port } | L4::Udp { src_port, dst_port } => {
                let proto = if matches!(self.l4, L4::Tcp { .. }) {
                    "tcp"
                } else {
                    "udp"
                };
                write!(
                    f,
                    "{proto} {}:{src_port} -> {}:{dst_port}",
                    self.src, self.dst
                )
            }
            L4::Icmp {
                id,
                icmp_type,
                code,
            }
            | L4::Icmpv6 {
                id,
                icmp_type,
                code,
            } => write!(
                f,
                "icmp {} -> {} type {icmp_type} code {code} id {id}",
                self.src, self.dst
            ),
            L4::Other { protocol } => write!(f, "proto {protocol} {} -> {}", self.src, self.dst),
        }
    }
}

/// TCP state as the kernel's conntrack tracks it (`enum tcp_conntrack`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// `TCP_CONNTRACK_NONE`.
    None,
    /// `TCP_CONNTRACK_SYN_SENT`.
    SynSent,
    /// `TCP_CONNTRACK_SYN_RECV`.
    SynRecv,
    /// `TCP_CONNTRACK_ESTABLISHED`.
    Established,
    /// `TCP_CONNTRACK_FIN_WAIT`.
    FinWait,
    /// `TCP_CONNTRACK_CLOSE_WAIT`.
    CloseWait,
    /// `TCP_CONNTRACK_LAST_ACK`.
    LastAck,
    /// `TCP_CONNTRACK_TIME_WAIT`.
    TimeWait,
    /// `TCP_CONNTRACK_CLOSE`.
    Close,
    /// `TCP_CONNTRACK_SYN_SENT2` (simultaneous open).
    SynSent2,
    /// A value this code does not know.
    Unknown(u8),
}

impl From<u8> for TcpState {
    fn from(v: u8) -> Self {
        match v {
            0 => TcpState::None,
            1 => TcpState::SynSent,
            2 => TcpState::SynRecv,
            3 => TcpState::Established,
            4 => TcpState::FinWait,
            5 => TcpState::CloseWait,
            6 => TcpState::LastAck,
            7 => TcpState::TimeWait,
            8 => TcpState::Close,
            9 => TcpState::SynSent2,
            other => TcpState::Unknown(other),
        }
    }
}

impl fmt::Display for TcpState {
    /// The names the `conntrack` tool prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
            TcpState::Unknown(v) => return write!(f, "UNKNOWN({v})"),
        };
        f.write_str(name)
    }
}

/// `IP_CT_TCP_FLAG_WINDOW_SCALE`: the direction announced a window scale.
pub const TCP_FLAG_WINDOW_SCALE: u8 = 0x01;
/// `IP_CT_TCP_FLAG_SACK_PERM`.
pub const TCP_FLAG_SACK_PERM: u8 = 0x02;
/// `IP_CT_TCP_FLAG_CLOSE_INIT`: this direction sent the first FIN.
pub const TCP_FLAG_CLOSE_INIT: u8 = 0x04;
/// `IP_CT_TCP_FLAG_BE_LIBERAL`: window checks are off for this direction.
pub const TCP_FLAG_BE_LIBERAL: u8 = 0x08;

/// What conntrack knows of a TCP connection (`CTA_PROTOINFO_TCP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpInfo {
    /// Conntrack's TCP state.
    pub state: TcpState,
    /// Window scale of the original direction (`CTA_PROTOINFO_TCP_WSCALE_ORIGINAL`); absent in
    /// destroy events.
    pub wscale_original: Option<u8>,
    /// Window scale of the reply direction (`CTA_PROTOINFO_TCP_WSCALE_REPLY`).
    pub wscale_reply: Option<u8>,
    /// `IP_CT_TCP_FLAG_*` bits of the original direction.
    pub flags_original: Option<u8>,
    /// `IP_CT_TCP_FLAG_*` bits of the reply direction.
    pub flags_reply: Option<u8>,
}

/// Conntrack status bits (`CTA_STATUS`, `enum ip_conntrack_status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Status(pub u32);

impl Status {
    /// `IPS_EXPECTED`: an expected connection (e.g. FTP data).
    pub const EXPECTED: u32 = 1 << 0;
    /// `IPS_SEEN_REPLY`: packets were seen both ways.
    pub const SEEN_REPLY: u32 = 1 << 1;
    /// `IPS_ASSURED`: will not be evicted early.
    pub const ASSURED: u32 = 1 << 2;
    /// `IPS_CONFIRMED`: in the table.
    pub const CONFIRMED: u32 = 1 << 3;
    /// `IPS_SRC_NAT`.
    pub const SRC_NAT: u32 = 1 << 4;
    /// `IPS_DST_NAT`.
    pub const DST_NAT: u32 = 1 << 5;
    /// `IPS_DYING`: being removed.
    pub const DYING: u32 = 1 << 9;
    /// `IPS_OFFLOAD`: in a flowtable (timeout and protocol info are then not reported).
    pub const OFFLOAD: u32 = 1 << 14;

    /// Whether every bit of `bits` is set.
    pub fn has(&self, bits: u32) -> bool {
        self.0 & bits == bits
    }
}

/// One entry of the kernel's conntrack table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The direction of the first packet.
    pub original: Tuple,
    /// The expected answer (differs from the reversed original under NAT).
    pub reply: Tuple,
    /// The kernel's id of the entry (`CTA_ID`), stable while the entry lives.
    pub id: Option<u32>,
    /// The connection mark (`CTA_MARK`; dumps always report it, events only when set).
    pub mark: Option<u32>,
    /// Status bits.
    pub status: Status,
    /// Seconds until the entry expires (`CTA_TIMEOUT`; absent for offloaded entries).
    pub timeout: Option<u32>,
    /// TCP state, window scales and flags, for TCP.
    pub tcp: Option<TcpInfo>,
    /// The conntrack zone (`CTA_ZONE`), when not the default one.
    pub zone: Option<u16>,
}

/// What happened to an entry, from the event groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new entry (`NFNLGRP_CONNTRACK_NEW`).
    New(Entry),
    /// A change of state, status or mark (`NFNLGRP_CONNTRACK_UPDATE`).
    Update(Entry),
    /// The entry left the table (`NFNLGRP_CONNTRACK_DESTROY`).
    Destroy(Entry),
}

impl Event {
    /// The entry the event is about.
    pub fn entry(&self) -> &Entry {
        match self {
            Event::New(e) | Event::Update(e) | Event::Destroy(e) => e,
        }
    }
}

/// Keep the entries whose `mark & mask == value` (the kernel filters with `CTA_MARK` and
/// `CTA_MARK_MASK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkFilter {
    /// The bits wanted.
    pub value: u32,
    /// The bits compared.
    pub mask: u32,
}
