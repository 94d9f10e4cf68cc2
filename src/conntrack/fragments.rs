//! Fragments statewall sees unreassembled: the datagrams whose first fragment was admitted.
//!
//! Where kernel connection tracking is in use the kernel reassembles before the FORWARD hook
//! (nf_defrag, pulled in by nf_conntrack; the daemon checks it at start) and no fragment gets
//! here. Otherwise a fragment is judged like this:
//! - the first fragment carries the transport header: it is tracked and judged by its flow or
//!   the rules like any packet; when it passes, its datagram (source, destination, protocol,
//!   identifier) is remembered for [`FRAGMENT_TTL`];
//! - a later fragment passes only while its datagram is remembered; otherwise (first fragment
//!   dropped, never seen, or overtaken) it is dropped as `fragment_orphan`. It is never let
//!   through on its own: it carries no ports for any rule to judge;
//! - a TCP segment sent as fragments is as long as its last fragment says: each later
//!   fragment moves the sender's end in the flow's window, so the receiver's ACK of the whole
//!   segment is no `ack_unsent_data`.
//!
//! At most [`MAX_DATAGRAMS`] datagrams are remembered (the oldest goes first), so a flood of
//! fragments costs bounded memory; orphans cost nothing.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::AnyKey;
use crate::packet::Seq;
use crate::time::Tick;

/// How long the later fragments of an admitted datagram are let through, seconds (Linux's
/// `ipfrag_time`).
pub const FRAGMENT_TTL: u32 = 30;
/// Datagrams remembered at most.
pub const MAX_DATAGRAMS: usize = 8192;

/// One datagram: what its fragments share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct DatagramId {
    pub(super) src: IpAddr,
    pub(super) dst: IpAddr,
    pub(super) proto: u8,
    pub(super) id: u32,
}

/// For a TCP segment sent as fragments: where its bytes go in the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TcpPart {
    /// The flow's key.
    pub(super) key: AnyKey,
    /// The segment came from the key's low endpoint.
    pub(super) from_lo: bool,
    /// The segment's sequence number.
    pub(super) seq: Seq,
    /// Length of its TCP header (the first bytes of the datagram's transport part).
    pub(super) header: u32,
}

#[derive(Clone, Copy, Debug)]
struct Admitted {
    until: Tick,
    tcp: Option<TcpPart>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<DatagramId, Admitted, ahash::RandomState>,
    /// Datagrams in the order they were admitted (each once).
    order: VecDeque<DatagramId>,
}

/// The admitted datagrams. `Sync`: one mutex, taken by fragments only.
#[derive(Debug, Default)]
pub struct Fragments {
    inner: Mutex<Inner>,
}

impl Fragments {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers a datagram whose first fragment passed at `now`.
    pub(super) fn admit(&self, id: DatagramId, tcp: Option<TcpPart>, now: Tick) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        // Forget the expired ones at the front, then the oldest while full.
        while let Some(front) = inner.order.front().copied() {
            let expired = inner.map.get(&front).is_none_or(|a| !a.until.is_after(now));
            if !expired && inner.map.len() < MAX_DATAGRAMS {
                break;
            }
            inner.order.pop_front();
            inner.map.remove(&front);
        }
        let entry = Admitted {
            until: now.after_secs(FRAGMENT_TTL),
            tcp,
        };
        if inner.map.insert(id, entry).is_none() {
            inner.order.push_back(id);
        }
    }

    /// A later fragment of `id` at `now`: `None` when its datagram is not admitted, else the
    /// TCP part to extend (if it is a TCP segment).
    pub(super) fn later(&self, id: &DatagramId, now: Tick) -> Option<Option<TcpPart>> {
        let inner = self.lock();
        inner
            .map
            .get(id)
            .filter(|a| a.until.is_after(now))
            .map(|a| a.tcp)
    }

    /// Number of datagrams remembered.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
