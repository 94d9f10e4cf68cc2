//! Tombstones: connections that closed recently, remembered for `tombstone_ttl` so that their
//! late segments (FIN/ACKs, ACKs, SYN/ACK retransmissions) are not taken for probes. Bounded by
//! `max_tombstones`, oldest first out.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::time::Timestamp;
use crate::verdict::Flow;

/// Canonical 5-tuple of a closed connection (both directions map to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Tuple {
    proto: u8,
    a: (IpAddr, u16),
    b: (IpAddr, u16),
}

impl Tuple {
    /// The tuple of the connection between `x` and `y` (either may be the opener).
    pub(super) fn new(proto: u8, x: (IpAddr, u16), y: (IpAddr, u16)) -> Tuple {
        if x <= y {
            Tuple { proto, a: x, b: y }
        } else {
            Tuple { proto, a: y, b: x }
        }
    }

    /// The tuple of `flow`'s connection.
    pub(super) fn of(flow: &Flow) -> Tuple {
        Tuple::new(flow.proto, (flow.src, flow.sport), (flow.dst, flow.dport))
    }
}

/// Recently closed connections, oldest first.
#[derive(Debug, Default)]
pub(super) struct Tombstones {
    /// Until when each tuple is remembered.
    pub(super) expiry: HashMap<Tuple, Timestamp>,
    /// Insertion order, with the expiry each insertion set.
    order: VecDeque<(Tuple, Timestamp)>,
}

impl Tombstones {
    /// Remembers `t` until `until`, forgetting the oldest beyond `cap` tuples.
    pub(super) fn insert(&mut self, t: Tuple, until: Timestamp, cap: usize) {
        self.expiry.insert(t, until);
        self.order.push_back((t, until));
        while self.expiry.len() > cap {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((t, until)) = self.order.pop_front() {
            // A tuple closed again later has a newer entry further back: keep that one.
            if self.expiry.get(&t) == Some(&until) {
                self.expiry.remove(&t);
            }
        }
    }

    /// Forgets the tuples expired at `now`.
    pub(super) fn prune(&mut self, now: Timestamp) {
        while self.order.front().is_some_and(|(_, until)| *until <= now) {
            self.pop_oldest();
        }
    }

    /// True when `t` closed recently (its tombstone has not expired at `now`).
    pub(super) fn contains(&self, t: &Tuple, now: Timestamp) -> bool {
        self.expiry.get(t).is_some_and(|until| now < *until)
    }
}
