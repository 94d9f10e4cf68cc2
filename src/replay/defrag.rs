//! Reassembly of IP fragments before the engine, as the gateway's kernel does it.
//!
//! On the gateway the kernel reassembles every datagram before the FORWARD hook (nf_defrag,
//! pulled in by connection tracking; the daemon checks it at start), so statewall judges whole
//! datagrams and never a fragment. `statewall replay` does the same by default, following
//! Linux 6.x (`ip_defrag` for IPv4, `nf_ct_frag6_gather` for IPv6, `inet_frag_queue_insert`):
//! - a datagram is the fragments of one (source, destination, identifier, and for IPv4 the
//!   protocol); it is judged once, when its last missing piece arrives, as one packet built
//!   from the first fragment's header (IPv6: its headers before the fragment header) and the
//!   pieces in order. An IPv6 atomic fragment (offset 0, no more to come) goes the same way:
//!   a datagram of one fragment;
//! - a fragment that lies wholly inside a run of held fragments is a duplicate: it is dropped
//!   and the datagram kept; any other overlap discards the whole datagram (RFC 5722, which
//!   Linux applies to IPv4 too);
//! - an end that contradicts what is held (a second, different last fragment, or data beyond
//!   the last), or a fragment without data, discards the IPv4 datagram but only the fragment
//!   in IPv6; an IPv4 fragment other than the last is rounded down to a multiple of 8 bytes,
//!   while an IPv6 one that is not a multiple of 8 discards its datagram and goes on
//!   unreassembled (the engine judges it); an IPv6 first fragment that does not hold the
//!   whole header chain up to the transport header (RFC 8200 4.5) goes on unreassembled too;
//!   a datagram longer than 65 535 bytes is discarded;
//! - a datagram is held at most 30 s (IPv4, `ipfrag_time`) or 60 s (IPv6,
//!   `nf_conntrack_frag6_timeout`) from its first fragment; once more than [`MEMORY_LIMIT`]
//!   bytes of fragments are held in a family (`ipfrag_high_thresh`), its fragments are
//!   dropped until some datagram completes or expires;
//! - a fragment cut short by the capture's snap length is not reassembled: the engine judges
//!   it as the fragment it is.
//!
//! Not modelled: the ECN combination check, IPv4's `ipfrag_max_dist` (a datagram restarted
//! when 64 other fragments of its source came in between) and the kernel's memory accounting
//! by buffer size (here: by data bytes).
//!
//! Written here rather than with `etherparse::defrag`: that pool merges overlapping
//! fragments (the last write wins), where Linux discards the datagram, and holds memory
//! without bound.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use etherparse::checksum::Sum16BitWords;
use etherparse::IpNumber;

/// Fragment bytes held at most per address family (Linux's `ipfrag_high_thresh` default).
pub const MEMORY_LIMIT: usize = 4 * 1024 * 1024;
/// How long an IPv4 datagram waits for its fragments.
const TIMEOUT_V4: Duration = Duration::from_secs(30);
/// How long an IPv6 datagram waits for its fragments.
const TIMEOUT_V6: Duration = Duration::from_secs(60);
/// Largest reassembled datagram (IPv4 total length, IPv6 payload length).
const MAX_LEN: usize = 65_535;

/// What became of one packet handed to the reassembler.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not a fragment, or one the kernel lets through unreassembled: judge it as it is.
    Whole,
    /// A fragment, held until its datagram is complete.
    Held,
    /// The fragment completed its datagram: here it is, whole, with the number of fragments
    /// it was made of.
    Complete(Vec<u8>, usize),
    /// The fragment was dropped (and, as [`Discard`] says, maybe its datagram with it).
    Discarded(Discard),
}

/// Why a fragment was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discard {
    /// It lies wholly inside what is held already (only the fragment is dropped).
    Duplicate,
    /// It overlaps what is held (RFC 5722): the datagram is discarded.
    Overlap,
    /// Its end contradicts the datagram's, or it holds no data (IPv4: the datagram is
    /// discarded; IPv6: only the fragment).
    BadEnd,
    /// The datagram would exceed 65 535 bytes (IPv6: only this fragment is dropped).
    Oversize,
    /// Too many fragment bytes are held already (only the fragment is dropped).
    MemoryLimit,
}

impl Discard {
    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Discard::Duplicate => "duplicate",
            Discard::Overlap => "overlap",
            Discard::BadEnd => "bad_end",
            Discard::Oversize => "oversize",
            Discard::MemoryLimit => "memory_limit",
        }
    }
}

/// What a fragment that cannot be queued costs.
enum Refused {
    /// The fragment only.
    Fragment(Discard),
    /// Its whole datagram.
    Datagram(Discard),
}

/// One datagram's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    /// IPv4: the protocol; IPv6 (not part of Linux's key): 0.
    proto: u8,
}

/// What one fragment says about itself.
struct Piece<'a> {
    key: Key,
    /// Byte offset of its data in the datagram's fragmentable part.
    offset: usize,
    more: bool,
    data: &'a [u8],
    /// The headers to rebuild the datagram with (the first fragment's count).
    head: &'a [u8],
    /// IPv6: the "next header" to write into the reassembled datagram.
    next_header: Option<NextHeader>,
    /// IPv6: a fragment other than the last whose length is not a multiple of 8.
    unaligned: bool,
}

impl Piece<'_> {
    fn v6(&self) -> bool {
        self.key.src.is_ipv6()
    }
}

/// IPv6: where in the headers before the fragment header the byte naming it sits (the fixed
/// header's or the last extension header's), and what the fragment header named instead.
#[derive(Clone, Copy)]
struct NextHeader {
    at: usize,
    value: u8,
}

/// The first fragment's headers, to rebuild the datagram with.
struct Head {
    bytes: Vec<u8>,
    next_header: Option<NextHeader>,
}

/// A datagram being reassembled.
struct Datagram {
    created: Duration,
    /// Data pieces by offset; they never overlap.
    pieces: BTreeMap<usize, Vec<u8>>,
    /// The datagram's length, once the last fragment has come.
    end: Option<usize>,
    /// The first fragment's headers, once it has come.
    head: Option<Head>,
    bytes: usize,
}

/// Fragments held until their datagrams are complete.
pub struct Reassembler {
    datagrams: HashMap<Key, Datagram>,
    /// Datagrams in the order they were started, for expiry (stale entries are skipped).
    started: VecDeque<(Duration, Key)>,
    /// Bytes held, IPv4 and IPv6.
    held: [usize; 2],
    limit: usize,
}

impl Default for Reassembler {
    fn default() -> Self {
        Reassembler::with_limit(MEMORY_LIMIT)
    }
}

impl Reassembler {
    /// A reassembler holding at most `limit` bytes of fragments per family.
    pub fn with_limit(limit: usize) -> Reassembler {
        Reassembler {
            datagrams: HashMap::new(),
            started: VecDeque::new(),
            held: [0, 0],
            limit,
        }
    }

    /// Takes `ip` (a packet from its IP header on, `len` bytes long on the wire) seen at `now`.
    pub fn push(&mut self, ip: &[u8], len: usize, now: Duration) -> Outcome {
        self.expire(now);
        let ip = &ip[..len.min(ip.len())];
        let piece = match ip.first().map(|b| b >> 4) {
            Some(4) => v4_piece(ip),
            Some(6) => v6_piece(ip),
            _ => None,
        };
        match piece {
            Some(piece) => self.add(piece, now),
            None => Outcome::Whole,
        }
    }

    fn add(&mut self, piece: Piece<'_>, now: Duration) -> Outcome {
        let family = usize::from(piece.key.src.is_ipv6());
        // As Linux's inet_frag_find: over the limit, no fragment is taken, new or not.
        if self.held[family] > self.limit {
            return Outcome::Discarded(Discard::MemoryLimit);
        }
        if piece.unaligned {
            // nf_ct_frag6_queue: the datagram is killed, the fragment goes on as it is.
            self.remove(&piece.key);
            return Outcome::Whole;
        }
        let datagram = match self.datagrams.entry(piece.key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                self.started.push_back((now, piece.key));
                e.insert(Datagram {
                    created: now,
                    pieces: BTreeMap::new(),
                    end: None,
                    head: None,
                    bytes: 0,
                })
            }
        };
        match datagram.insert(&piece) {
            Ok(()) => {}
            Err(Refused::Fragment(why)) => {
                if datagram.pieces.is_empty() {
                    // Nothing held: do not keep the datagram this fragment would have opened.
                    self.remove(&piece.key);
                }
                return Outcome::Discarded(why);
            }
            Err(Refused::Datagram(why)) => {
                self.remove(&piece.key);
                return Outcome::Discarded(why);
            }
        }
        self.held[family] += piece.data.len();
        let Some(whole) = datagram.whole() else {
            return Outcome::Held;
        };
        let fragments = datagram.pieces.len();
        self.remove(&piece.key);
        match whole {
            Ok(bytes) => Outcome::Complete(bytes, fragments),
            Err(discard) => Outcome::Discarded(discard),
        }
    }

    fn remove(&mut self, key: &Key) {
        if let Some(d) = self.datagrams.remove(key) {
            let family = usize::from(key.src.is_ipv6());
            self.held[family] = self.held[family].saturating_sub(d.bytes);
        }
    }

    /// Forgets the datagrams whose time is up.
    fn expire(&mut self, now: Duration) {
        while let Some(&(created, key)) = self.started.front() {
            let timeout = if key.src.is_ipv6() {
                TIMEOUT_V6
            } else {
                TIMEOUT_V4
            };
            if now < created + timeout {
                break;
            }
            self.started.pop_front();
            // The key may have been completed and started again since: only its own start
            // expires it.
            if self
                .datagrams
                .get(&key)
                .is_some_and(|d| d.created == created)
            {
                self.remove(&key);
            }
        }
    }

    /// Datagrams still incomplete.
    pub fn pending(&self) -> usize {
        self.datagrams.len()
    }

    /// Fragment bytes held, both families.
    pub fn held_bytes(&self) -> usize {
        self.held[0] + self.held[1]
    }
}

impl Datagram {
    fn insert(&mut self, p: &Piece<'_>) -> Result<(), Refused> {
        // IPv4 gives up the datagram where IPv6 only drops the fragment.
        let bad = |why| {
            if p.v6() {
                Refused::Fragment(why)
            } else {
                Refused::Datagram(why)
            }
        };
        let end = p.offset + p.data.len();
        if p.v6() && end > MAX_LEN {
            return Err(Refused::Fragment(Discard::Oversize));
        }
        let held_end = self
            .pieces
            .last_key_value()
            .map_or(0, |(at, d)| at + d.len());
        if p.more {
            if self.end.is_some_and(|e| end > e) {
                return Err(bad(Discard::BadEnd));
            }
        } else if end < held_end || self.end.is_some_and(|e| e != end) {
            return Err(bad(Discard::BadEnd));
        }
        if p.data.is_empty() {
            return Err(bad(Discard::BadEnd));
        }
        // Pieces never overlap, so the last one starting before `end` is the one to check.
        // Linux compares with runs of adjacent fragments: inside one run is a duplicate,
        // touching held bytes otherwise is an overlap.
        let overlaps = self
            .pieces
            .range(..end)
            .next_back()
            .is_some_and(|(at, d)| at + d.len() > p.offset);
        if overlaps {
            return Err(if self.covered(p.offset, end) {
                Refused::Fragment(Discard::Duplicate)
            } else {
                Refused::Datagram(Discard::Overlap)
            });
        }
        if !p.more {
            self.end = Some(end);
        }
        if p.offset == 0 {
            self.head = Some(Head {
                bytes: p.head.to_vec(),
                next_header: p.next_header,
            });
        }
        self.pieces.insert(p.offset, p.data.to_vec());
        self.bytes += p.data.len();
        Ok(())
    }

    /// Whether `start..end` lies within one run of adjacent held pieces.
    fn covered(&self, start: usize, end: usize) -> bool {
        let Some((&first, d)) = self.pieces.range(..=start).next_back() else {
            return false;
        };
        let mut at = first + d.len();
        if at <= start {
            return false;
        }
        // Pieces never overlap: the run goes on while the next one starts where it ends.
        for (&offset, d) in self.pieces.range(first + 1..end) {
            if offset != at {
                break;
            }
            at += d.len();
        }
        at >= end
    }

    /// The whole datagram once every byte up to the end is held.
    fn whole(&self) -> Option<Result<Vec<u8>, Discard>> {
        let end = self.end?;
        let head = self.head.as_ref()?;
        let mut at = 0;
        for (offset, d) in &self.pieces {
            if *offset != at {
                return None;
            }
            at += d.len();
        }
        if at != end {
            return None;
        }
        let mut out = head.bytes.clone();
        for d in self.pieces.values() {
            out.extend_from_slice(d);
        }
        Some(rebuild(&mut out, head.bytes.len(), head.next_header).map(|()| out))
    }
}

/// Writes the reassembled datagram's length and clears its fragment fields.
fn rebuild(
    out: &mut [u8],
    head_len: usize,
    next_header: Option<NextHeader>,
) -> Result<(), Discard> {
    match next_header {
        None => {
            let total = u16::try_from(out.len()).map_err(|_| Discard::Oversize)?;
            out[2..4].copy_from_slice(&total.to_be_bytes());
            // Keep "don't fragment", clear "more fragments" and the offset.
            out[6] &= 0x40;
            out[7] = 0;
            out[10..12].copy_from_slice(&[0, 0]);
            // Summed over native-endian words (RFC 1071 2(B)): the bytes go back as they are.
            let sum = Sum16BitWords::new()
                .add_slice(&out[..head_len])
                .ones_complement();
            out[10..12].copy_from_slice(&sum.to_ne_bytes());
        }
        Some(NextHeader { at, value }) => {
            let payload = u16::try_from(out.len() - 40).map_err(|_| Discard::Oversize)?;
            out[4..6].copy_from_slice(&payload.to_be_bytes());
            out[at] = value;
        }
    }
    Ok(())
}

/// An IPv4 fragment, or `None` for a whole packet (or one the engine judges as it is).
fn v4_piece(ip: &[u8]) -> Option<Piece<'_>> {
    let field = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
    let (more, offset) = (field & 0x2000 != 0, usize::from(field & 0x1fff) * 8);
    if !more && offset == 0 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    // A broken header is the engine's to judge (the kernel drops it before netfilter); one
    // cut short by the capture's snap length cannot be reassembled: the engine judges it
    // as the fragment it is.
    if ihl < 20 || total < ihl || ip.len() < total {
        return None;
    }
    let mut data = &ip[ihl..total];
    if more {
        // Linux rounds a non-last fragment down to a multiple of 8 bytes.
        data = &data[..data.len() & !7];
    }
    let addr = |at: usize| Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
    Some(Piece {
        key: Key {
            src: addr(12).into(),
            dst: addr(16).into(),
            id: u32::from(u16::from_be_bytes([ip[4], ip[5]])),
            proto: ip[9],
        },
        offset,
        more,
        data,
        head: &ip[..ihl],
        next_header: None,
        unaligned: false,
    })
}

/// An IPv6 fragment, or `None` for a whole packet or one that goes on unreassembled.
fn v6_piece(ip: &[u8]) -> Option<Piece<'_>> {
    let payload = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
    // A jumbogram (payload length 0) is not reassembled; one cut short by the capture's snap
    // length cannot be.
    if payload == 0 {
        return None;
    }
    let ip = ip.get(..40 + payload)?;
    // The extension headers before the fragment header (Linux's find_prev_fhdr).
    let (mut next, mut next_at, mut at) = (ip[6], 6, 40);
    while IpNumber(next) != IpNumber::IPV6_FRAGMENTATION_HEADER {
        let len = ext_len(next, *ip.get(at + 1)?)?;
        if at + len > ip.len() {
            return None;
        }
        (next, next_at) = (ip[at], at);
        at += len;
    }
    let frag = ip.get(at..at + 8)?;
    let field = u16::from_be_bytes([frag[2], frag[3]]);
    let (more, offset) = (field & 1 != 0, usize::from(field >> 3) * 8);
    let data = &ip[at + 8..];
    if offset == 0 && headers_truncated(frag[0], data) {
        // RFC 8200 4.5: a first fragment must hold the whole header chain; the kernel lets
        // it through unreassembled.
        return None;
    }
    let addr = |at: usize| {
        let mut o = [0u8; 16];
        o.copy_from_slice(&ip[at..at + 16]);
        Ipv6Addr::from(o)
    };
    Some(Piece {
        key: Key {
            src: addr(8).into(),
            dst: addr(24).into(),
            id: u32::from_be_bytes([frag[4], frag[5], frag[6], frag[7]]),
            proto: 0,
        },
        offset,
        more,
        data,
        head: &ip[..at],
        next_header: Some(NextHeader {
            at: next_at,
            value: frag[0],
        }),
        unaligned: more && data.len() % 8 != 0,
    })
}

/// Length of an IPv6 extension header of `kind` whose length byte is `units`, or `None` when
/// `kind` names no extension header.
fn ext_len(kind: u8, units: u8) -> Option<usize> {
    let units = usize::from(units);
    match IpNumber(kind) {
        IpNumber::IPV6_HEADER_HOP_BY_HOP
        | IpNumber::IPV6_ROUTE_HEADER
        | IpNumber::IPV6_DESTINATION_OPTIONS
        | IpNumber::IPV6_FRAGMENTATION_HEADER => Some((units + 1) * 8),
        IpNumber::AUTHENTICATION_HEADER => Some((units + 2) * 4),
        _ => None,
    }
}

/// Whether a first fragment's data, whose first header is `next`, stops before the end of
/// the transport header (Linux's `ipv6frag_thdr_truncated`: TCP 20 bytes, UDP and ICMPv6 8,
/// any other protocol 1).
fn headers_truncated(mut next: u8, data: &[u8]) -> bool {
    let mut at = 0;
    loop {
        match IpNumber(next) {
            IpNumber::IPV6_FRAGMENTATION_HEADER => return false,
            IpNumber::IPV6_NO_NEXT_HEADER => return false,
            _ => {}
        }
        // A length byte past the end reads as 0: the header is cut short either way.
        let Some(len) = ext_len(next, data.get(at + 1).copied().unwrap_or(0)) else {
            break;
        };
        match data.get(at) {
            Some(&n) if at + len <= data.len() => {
                next = n;
                at += len;
            }
            _ => return true,
        }
    }
    let need = match next {
        crate::proto::TCP => 20,
        crate::proto::UDP | crate::proto::ICMPV6 => 8,
        _ => 1,
    };
    at + need > data.len()
}

#[cfg(test)]
mod tests;
