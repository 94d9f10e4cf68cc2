//! Handshakes that a full table evicted, remembered so that their completion brings them back.
//!
//! Under a flood of spoofed SYNs the table fills with half-open entries and early drop takes
//! the oldest of them: a genuine client's handshake is evicted too when its SYN/ACK or its
//! final ACK takes longer to come than the flood takes to open as many entries as the table
//! holds (a few milliseconds). Its next segment then finds no entry and is answered with a
//! RST, and the connection fails although it did nothing wrong.
//!
//! So an evicted TCP handshake is remembered here, outside the table: its entry as it was,
//! in a bounded memory that forgets the oldest first (and forgets it at once when a new entry
//! takes the tuple). A segment that finds no entry is judged by the remembered one, as the
//! entry would have judged it: the responder's SYN/ACK and a retransmitted SYN pass and are
//! learned without taking a slot of the table, and the originator's ACK that completes the
//! handshake brings the connection back into it, established (so early drop no longer takes
//! it). A segment the remembered entry refuses is judged as of no connection. A spoofer
//! never sees the server's SYN/ACK, so it cannot send that ACK: a flood of spoofed SYNs gains
//! nothing from the memory, and a remembered handshake holds no slot until it really
//! completes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::tcp::TcpState;
use super::{flags, Addr, Conn, Key, ProtoState};
use crate::time::Tick;

/// Keyed hasher (as the table's): remote hosts cannot aim their tuples at one bucket.
type Hasher = ahash::RandomState;

/// Flags of an entry that is not remembered when evicted: a flow adopted without its
/// handshake (blindly or from the kernel's table), or one a recheck or an operator closed.
const NOT_REMEMBERED: u8 = flags::BLIND | flags::KERNEL | flags::REVOKED | flags::ASSURED;

/// Whether an evicted entry is a handshake worth remembering: a TCP connection opened by a SYN
/// that statewall admitted, not yet established.
pub fn rememberable(conn: &Conn) -> bool {
    conn.flags & NOT_REMEMBERED == 0
        && matches!(
            &conn.proto,
            ProtoState::Tcp(t)
                if matches!(t.state, TcpState::SynSent | TcpState::SynSent2 | TcpState::SynRecv)
        )
}

/// What a segment did to a remembered handshake ([`Handshakes::recall`]).
pub enum Recall<T> {
    /// The handshake stays remembered (as the closure left it); the segment's outcome.
    Keep(T),
    /// The handshake leaves the memory (it completed: its entry goes back into the table).
    Take(T),
}

/// One family's remembered handshakes: at most `cap`, the oldest forgotten first.
pub struct Handshakes<A: Addr> {
    inner: Mutex<Remembered<A>>,
    /// How many are remembered at most ([`super::Limits::handshake_cap`]).
    cap: usize,
    /// Handshakes remembered: 0 while the table never evicted one, and then a segment of no
    /// entry costs one atomic load here.
    len: AtomicUsize,
}

struct Remembered<A: Addr> {
    /// The entries, each with the number of its place in `order`.
    entries: HashMap<Key<A>, (Conn, u64), Hasher>,
    /// Keys in the order they were remembered, oldest first; a place whose key was taken or
    /// remembered again since is skipped when it comes up.
    order: VecDeque<(Key<A>, u64)>,
    /// Number of the next place.
    next: u64,
}

impl<A: Addr> Handshakes<A> {
    /// An empty memory of at most `cap` handshakes.
    pub fn new(cap: usize) -> Self {
        Handshakes {
            inner: Mutex::new(Remembered {
                entries: HashMap::with_hasher(Hasher::new()),
                order: VecDeque::new(),
                next: 0,
            }),
            cap: cap.max(1),
            len: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Remembered<A>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers the handshake `conn` evicted from under `key`, forgetting the oldest ones
    /// beyond the cap. Its per-source count was released with the entry.
    pub fn remember(&self, key: Key<A>, mut conn: Conn) {
        conn.flags &= !(flags::COUNTED | flags::OFFLOADED);
        let mut m = self.lock();
        while m.order.len() >= self.cap {
            let Some((old, place)) = m.order.pop_front() else {
                break;
            };
            if m.entries.get(&old).is_some_and(|(_, p)| *p == place) {
                m.entries.remove(&old);
            }
        }
        let place = m.next;
        m.next += 1;
        m.order.push_back((key, place));
        m.entries.insert(key, (conn, place));
        self.len.store(m.entries.len(), Ordering::Relaxed);
    }

    /// Runs `f` on the live handshake remembered under `key`, if any: [`Recall::Keep`] leaves
    /// it remembered as `f` changed it, [`Recall::Take`] forgets it. Returns what `f` said;
    /// `None` when nothing live is remembered under `key`.
    pub fn recall<T>(
        &self,
        key: &Key<A>,
        now: Tick,
        f: impl FnOnce(&mut Conn) -> Recall<T>,
    ) -> Option<T> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut m = self.lock();
        let (conn, _) = m.entries.get_mut(key)?;
        if !conn.expires.is_after(now) {
            m.entries.remove(key);
            self.len.store(m.entries.len(), Ordering::Relaxed);
            return None;
        }
        match f(conn) {
            Recall::Keep(t) => Some(t),
            Recall::Take(t) => {
                m.entries.remove(key);
                self.len.store(m.entries.len(), Ordering::Relaxed);
                Some(t)
            }
        }
    }

    /// Forgets the handshake remembered under `key` (a new entry took the tuple).
    pub fn forget(&self, key: &Key<A>) {
        if self.len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut m = self.lock();
        if m.entries.remove(key).is_some() {
            self.len.store(m.entries.len(), Ordering::Relaxed);
        }
    }

    /// Forgets the handshakes whose entries expired by `now` (the sweep, once a second: a
    /// flood's handshakes are gone 2 minutes after it, SYN_SENT's timeout).
    pub fn forget_expired(&self, now: Tick) {
        if self.len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut m = self.lock();
        m.entries.retain(|_, (c, _)| c.expires.is_after(now));
        let Remembered { entries, order, .. } = &mut *m;
        order.retain(|(k, place)| entries.get(k).is_some_and(|(_, p)| p == place));
        // After a flood: give the memory back.
        if entries.len() * 4 < entries.capacity() {
            entries.shrink_to_fit();
            order.shrink_to_fit();
        }
        self.len.store(entries.len(), Ordering::Relaxed);
    }

    /// Forgets every handshake (a recheck or a kill: what they would bring back was judged
    /// by rules or an operator that may refuse it now).
    pub fn forget_all(&self) {
        if self.len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut m = self.lock();
        m.entries.clear();
        m.order.clear();
        self.len.store(0, Ordering::Relaxed);
    }

    /// Handshakes remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether none is remembered.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::{RuleTag, Tally, TcpConn};
    use crate::proto;

    fn key(port: u16) -> Key<[u8; 4]> {
        Key::new(proto::TCP, [198, 51, 100, 2], port, [203, 0, 113, 2], 80).0
    }

    fn half_open(expires: Tick) -> Conn {
        let syn = crate::testing::tcp(
            "198.51.100.2".parse().expect("v4"),
            "203.0.113.2".parse().expect("v4"),
        )
        .flags(crate::testing::SYN)
        .seq(100)
        .build();
        let pkt = crate::packet::Packet::decode(&syn, &crate::packet::PacketMeta::default())
            .expect("decodes");
        let crate::packet::Transport::Tcp(t) = &pkt.transport else {
            panic!("not TCP")
        };
        Conn {
            expires,
            flags: flags::COUNTED,
            rule: RuleTag::default(),
            proto: ProtoState::Tcp(TcpConn::from_syn(t)),
            tally: Tally::default(),
        }
    }

    #[test]
    fn only_admitted_handshakes_are_remembered() {
        let conn = half_open(Tick::default().after_secs(60));
        assert!(rememberable(&conn));
        for flag in [flags::BLIND, flags::KERNEL, flags::REVOKED, flags::ASSURED] {
            let other = Conn {
                flags: conn.flags | flag,
                ..conn
            };
            assert!(!rememberable(&other), "flag {flag:#x}");
        }
        let mut established = conn;
        if let ProtoState::Tcp(t) = &mut established.proto {
            t.state = TcpState::Established;
        }
        assert!(!rememberable(&established));
        let datagram = Conn {
            proto: ProtoState::Datagram(Tick::default()),
            ..conn
        };
        assert!(!rememberable(&datagram));
    }

    #[test]
    fn the_memory_is_bounded_and_forgets_the_oldest_first() {
        let h = Handshakes::new(4);
        let conn = half_open(Tick::default().after_secs(60));
        for port in 0..10 {
            h.remember(key(port), conn);
        }
        assert_eq!(h.len(), 4);
        let found = |port| {
            h.recall(&key(port), Tick::default(), |_| Recall::Keep(()))
                .is_some()
        };
        assert!((0..6).all(|p| !found(p)));
        assert!((6..10).all(found));
        // Remembered again: its old place no longer counts, the newer one does.
        h.remember(key(6), conn);
        h.remember(key(10), conn);
        h.remember(key(11), conn);
        assert!(found(6) && !found(7) && !found(8));
        // The count was released with the table's entry.
        let flags = h.recall(&key(6), Tick::default(), |c| Recall::Keep(c.flags));
        assert_eq!(flags.map(|f| f & flags::COUNTED), Some(0));
    }

    #[test]
    fn taken_expired_and_forgotten_handshakes_are_gone() {
        let h = Handshakes::new(8);
        h.remember(key(1), half_open(Tick::default().after_secs(60)));
        h.remember(key(2), half_open(Tick::default().after_secs(5)));
        h.remember(key(3), half_open(Tick::default().after_secs(60)));
        assert_eq!(
            h.recall(&key(1), Tick::default(), |_| Recall::Take(1)),
            Some(1)
        );
        assert_eq!(
            h.recall(&key(1), Tick::default(), |_| Recall::Keep(1)),
            None
        );
        let later = Tick::default().after_secs(10);
        assert_eq!(h.recall(&key(2), later, |_| Recall::Keep(2)), None);
        assert_eq!(h.len(), 1);
        h.remember(key(4), half_open(Tick::default().after_secs(5)));
        h.forget_expired(later);
        assert_eq!(h.len(), 1);
        h.forget_all();
        assert!(h.is_empty());
        assert_eq!(
            h.recall(&key(3), Tick::default(), |_| Recall::Keep(3)),
            None
        );
    }
}
