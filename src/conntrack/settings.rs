//! Timeouts and table limits (the `[conntrack]` configuration section).

use serde::Deserialize;

use crate::source::SourcePrefix;

/// Per-state timeouts in seconds. Defaults are Linux's (`nf_conntrack_*_timeout_*`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP SYN_SENT (and SYN_SENT2, simultaneous open).
    pub syn_sent: u32,
    /// TCP SYN_RECV.
    pub syn_recv: u32,
    /// TCP ESTABLISHED.
    pub established: u32,
    /// TCP FIN_WAIT.
    pub fin_wait: u32,
    /// TCP CLOSE_WAIT.
    pub close_wait: u32,
    /// TCP LAST_ACK.
    pub last_ack: u32,
    /// TCP TIME_WAIT.
    pub time_wait: u32,
    /// TCP CLOSE (after a RST).
    pub close: u32,
    /// Cap while a TCP direction has data not yet acknowledged.
    pub unacknowledged: u32,
    /// Cap for a TCP connection adopted mid-stream until the other direction is seen.
    pub pickup: u32,
    /// UDP flow seen in one direction only.
    pub udp_unreplied: u32,
    /// UDP flow seen in both directions.
    pub udp_replied: u32,
    /// ICMP echo.
    pub icmp: u32,
    /// Other protocols, one direction only.
    pub generic_unreplied: u32,
    /// Other protocols, both directions.
    pub generic_replied: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            syn_sent: 120,
            syn_recv: 60,
            established: 432_000,
            fin_wait: 120,
            close_wait: 60,
            last_ack: 30,
            time_wait: 120,
            close: 10,
            unacknowledged: 300,
            pickup: 60,
            udp_unreplied: 30,
            udp_replied: 120,
            icmp: 30,
            generic_unreplied: 60,
            generic_replied: 600,
        }
    }
}

/// Table size limits.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Maximum number of tracked connections (IPv4 and IPv6 together).
    pub max_entries: usize,
    /// Maximum number of connections one source address may have open (TIME_WAIT and closed
    /// connections do not count). `0`: a tenth of `max_entries`.
    pub per_source: usize,
    /// How many entries a full table examines to find the oldest not-established one to evict.
    pub early_drop_scan: usize,
    /// What one source is for `per_source` (an IPv6 /64 by default; `[sources]`).
    #[serde(skip)]
    pub sources: SourcePrefix,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 262_144,
            per_source: 0,
            early_drop_scan: 256,
            sources: SourcePrefix::default(),
        }
    }
}

impl Limits {
    /// The effective per-source limit.
    pub fn per_source_limit(&self) -> usize {
        if self.per_source == 0 {
            (self.max_entries / 10).max(1)
        } else {
            self.per_source
        }
    }

    /// How many early-drop candidates each family's table remembers (its clock hand): every
    /// entry of a table of up to [`ALL_CANDIDATES`] entries, an eighth of a larger one. Each
    /// costs a key and a tick (20 B for IPv4), so remembering every entry of a large table
    /// would add 20 B to each of them; candidates the queue forgot are still found by the
    /// bounded scan behind it. The queue keeps the newest candidates, so under a flood an
    /// entry is evicted after as many newer ones as the queue holds: a new connection's
    /// handshake has that long (a table of 4 096 remembered 1 024 before: 16 ms of a flood of
    /// 64 000 SYNs/s; 2^16 is a second of it).
    pub fn candidate_cap(&self) -> usize {
        (self.max_entries / 8).max(self.max_entries.min(ALL_CANDIDATES))
    }

    /// How many handshakes evicted by early drop each family remembers until they complete
    /// ([`super::handshakes`]): half as many as the table holds, at least [`MIN_HANDSHAKES`]
    /// (a second of a flood of 64 000 SYNs/s: what a new connection's SYN/ACK, ACK and their
    /// retransmissions have to come back through a queue that the flood overflows), at most
    /// [`MAX_HANDSHAKES`]. A remembered handshake costs about 135 B (IPv4) or 185 B (IPv6),
    /// only while the table is full: 9 and 12 MB at the least, 18 and 24 MB for the default
    /// table, at most 35 and 49 MB.
    pub fn handshake_cap(&self) -> usize {
        (self.max_entries / 2).clamp(MIN_HANDSHAKES, MAX_HANDSHAKES)
    }
}

/// The fewest evicted handshakes a family remembers ([`Limits::handshake_cap`]).
pub const MIN_HANDSHAKES: usize = 1 << 16;

/// The most evicted handshakes a family remembers ([`Limits::handshake_cap`]).
pub const MAX_HANDSHAKES: usize = 1 << 18;

/// Tables of up to this many entries remember every early-drop candidate (1.3 MB for IPv4).
pub const ALL_CANDIDATES: usize = 1 << 16;

/// When a validated flow goes to the kernel fast path (`[offload]`, docs/performance.md): the
/// kernel then forwards its middle (packets without SYN, FIN or RST of a connection it calls
/// ESTABLISHED) and statewall sees only its teardown and what the kernel finds invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offload {
    /// Offload validated flows at all (off: every packet is judged by statewall).
    pub enable: bool,
    /// TCP: segments each direction must have sent after the handshake, the windows of both
    /// learned, before the flow is offloaded (1 to [`Offload::MAX_TCP_SEGMENTS`]).
    pub tcp_segments: u8,
    /// UDP, ICMP echo and other protocols: offloaded once replied.
    pub datagrams: bool,
}

impl Offload {
    /// The largest `tcp_segments` (the entry counts up to it in three bits per direction).
    pub const MAX_TCP_SEGMENTS: u8 = 7;

    /// No fast path: what an engine without `[offload]` does.
    pub const OFF: Offload = Offload {
        enable: false,
        tcp_segments: 2,
        datagrams: true,
    };
}

impl Default for Offload {
    fn default() -> Self {
        Offload::OFF
    }
}
