//! The connection table of one address family: a sharded hash map (dashmap, keyed hasher), a
//! per-source count of open connections, expiry and early drop.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use dashmap::mapref::entry::Entry;
use dashmap::mapref::one::RefMut;
use dashmap::DashMap;

use super::handshakes::{self, Handshakes};
use super::{flags, Addr, Conn, Counts, Dir, Key, Limits, Victim};
use crate::source::SourcePrefix;
use crate::time::Tick;

/// Keyed hasher: random keys per process, so remote hosts cannot aim their flows at one bucket.
type Hasher = ahash::RandomState;

/// Why a new entry could not be inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// The table is full and no entry could be evicted.
    TableFull,
    /// The source already has its maximum of open connections.
    SourceLimit,
}

/// Entry counts shared by the IPv4 and IPv6 tables, so the limit applies to both together.
#[derive(Debug, Default)]
pub struct TableCounts {
    entries: AtomicUsize,
}

impl TableCounts {
    /// Number of entries in both tables.
    pub fn entries(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }
}

/// Early drop's queue of one [`Victim`] class: keys with when they became candidates.
type Candidates<A> = Mutex<VecDeque<(Key<A>, Tick)>>;

/// An entry that left the table to make room: its key, the entry and its counters.
pub type Evicted<A> = (Key<A>, Conn, Counts);

/// One family's connections.
pub struct Table<A: Addr> {
    map: DashMap<Key<A>, Conn, Hasher>,
    /// Open connections per originating source (entries with [`flags::COUNTED`]), keyed by
    /// the source's first address (an IPv6 /64 by default: see [`SourcePrefix`]).
    per_source: DashMap<A, u32, Hasher>,
    /// What one source is.
    sources: SourcePrefix,
    /// Early drop's clock hands, one per [`Victim`] class: the keys of entries that became
    /// evictable (opened unassured, a TCP connection that started closing or closed), with
    /// when, oldest first. Bounded; a key whose entry is gone, was replaced or is no longer
    /// of that class is skipped when it comes up.
    candidates: [Candidates<A>; 2],
    /// Handshakes early drop evicted, until they complete ([`handshakes`]).
    pub(super) handshakes: Handshakes<A>,
    /// High words of the counters that wrapped (entries past 4 GiB or 4 G packets). Lock
    /// order: an entry of `map` may be held while this map is used, never the other way round.
    spill: DashMap<Key<A>, [[u32; 2]; 2], Hasher>,
    /// Entries in `spill` (0: nothing to look up or release).
    spilled: AtomicUsize,
}

impl<A: Addr> Default for Table<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Addr> Table<A> {
    /// An empty table with the default [`Limits`].
    pub fn new() -> Self {
        Self::for_limits(&Limits::default())
    }

    /// An empty table counting connections per source as `limits.sources` says, remembering
    /// at most [`Limits::handshake_cap`] evicted handshakes.
    pub fn for_limits(limits: &Limits) -> Self {
        Table {
            map: DashMap::with_hasher(Hasher::new()),
            per_source: DashMap::with_hasher(Hasher::new()),
            sources: limits.sources,
            candidates: [Mutex::new(VecDeque::new()), Mutex::new(VecDeque::new())],
            handshakes: Handshakes::new(limits.handshake_cap()),
            spill: DashMap::with_hasher(Hasher::new()),
            spilled: AtomicUsize::new(0),
        }
    }

    /// The live (not expired) entry under `key`, locked for update. An expired entry found on
    /// the way is removed.
    #[inline]
    pub fn get_live(
        &self,
        key: &Key<A>,
        now: Tick,
        counts: &TableCounts,
    ) -> Option<RefMut<'_, Key<A>, Conn>> {
        let entry = self.map.get_mut(key)?;
        if entry.expires.is_after(now) {
            return Some(entry);
        }
        drop(entry);
        self.remove_expired(key, now, counts);
        None
    }

    /// Removes the entry under `key` if it expired by `now` (found so by a lookup).
    #[cold]
    #[inline(never)]
    fn remove_expired(&self, key: &Key<A>, now: Tick, counts: &TableCounts) {
        self.remove_if(key, |c| !c.expires.is_after(now), counts);
    }

    /// Read-only copy of the live entry under `key`.
    pub fn peek(&self, key: &Key<A>, now: Tick) -> Option<Conn> {
        self.map
            .get(key)
            .map(|e| *e.value())
            .filter(|c| c.expires.is_after(now))
    }

    /// Counts one packet of `len` bytes in direction `dir` on the entry `conn` under `key`
    /// (held by the caller).
    #[inline(always)]
    pub fn account(&self, key: &Key<A>, conn: &mut Conn, dir: Dir, len: u32) {
        let wrapped = conn.tally.add(dir, len);
        if wrapped.iter().any(|w| *w) {
            self.spill_over(key, dir, wrapped);
        }
    }

    /// Carries the counters of `key` in direction `dir` that wrapped into their high words.
    #[cold]
    #[inline(never)]
    fn spill_over(&self, key: &Key<A>, dir: Dir, wrapped: [bool; 2]) {
        let mut high = self.spill.entry(*key).or_insert_with(|| {
            self.spilled.fetch_add(1, Ordering::Relaxed);
            [[0; 2]; 2]
        });
        for (h, w) in high[dir.idx()].iter_mut().zip(wrapped) {
            *h = h.wrapping_add(u32::from(w));
        }
    }

    /// The full counters of the entry `conn` under `key`.
    pub fn counts(&self, key: &Key<A>, conn: &Conn) -> Counts {
        let high = if self.spilled.load(Ordering::Relaxed) > 0 {
            self.spill.get(key).map_or([[0; 2]; 2], |h| *h)
        } else {
            [[0; 2]; 2]
        };
        conn.tally.counts(high)
    }

    /// Inserts a new connection opened by `originator`, enforcing the per-source limit. The
    /// caller has made room in the table. Returns the entry it replaced (a reopened or
    /// expired tuple, or one another worker inserted first) with its counters.
    pub fn insert(
        &self,
        key: Key<A>,
        originator: A,
        mut conn: Conn,
        per_source_limit: usize,
        counts: &TableCounts,
    ) -> Result<Option<(Conn, Counts)>, InsertError> {
        let counted = conn.should_count();
        if counted && !self.count(originator, per_source_limit) {
            return Err(InsertError::SourceLimit);
        }
        if counted {
            conn.flags |= flags::COUNTED;
        }
        match self.map.entry(key) {
            Entry::Occupied(mut old) => {
                // Replacing (a reopened or expired tuple): release the old entry's count.
                let prev = *old.get();
                let prev_counts = self.counts(&key, &prev);
                old.insert(conn);
                self.release(&key, &prev);
                Ok(Some((prev, prev_counts)))
            }
            Entry::Vacant(v) => {
                v.insert(conn);
                counts.entries.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    /// Removes the entry under `key` when `pred` holds; returns it with its counters.
    pub fn remove_if(
        &self,
        key: &Key<A>,
        pred: impl FnOnce(&Conn) -> bool,
        counts: &TableCounts,
    ) -> Option<(Conn, Counts)> {
        let (_, conn) = self.map.remove_if(key, |_, c| pred(c))?;
        counts.entries.fetch_sub(1, Ordering::Relaxed);
        let tally = self.counts(key, &conn);
        self.release(key, &conn);
        Some((conn, tally))
    }

    /// Keeps the per-source count in step with an entry whose state changed.
    pub fn recount(&self, key: &Key<A>, conn: &mut Conn, per_source_limit: usize) {
        let counted = conn.has(flags::COUNTED);
        let should = conn.should_count();
        let origin = originator(key, conn);
        if counted && !should {
            self.uncount(origin);
            conn.flags &= !flags::COUNTED;
        } else if !counted && should && self.count(origin, per_source_limit) {
            conn.flags |= flags::COUNTED;
        }
    }

    fn release(&self, key: &Key<A>, conn: &Conn) {
        if conn.has(flags::COUNTED) {
            self.uncount(originator(key, conn));
        }
        if self.spilled.load(Ordering::Relaxed) > 0 && self.spill.remove(key).is_some() {
            self.spilled.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn count(&self, src: A, limit: usize) -> bool {
        let mut n = self
            .per_source
            .entry(src.source(&self.sources))
            .or_insert(0);
        if usize::try_from(*n).unwrap_or(usize::MAX) >= limit {
            return false;
        }
        *n += 1;
        true
    }

    fn uncount(&self, src: A) {
        self.per_source
            .remove_if_mut(&src.source(&self.sources), |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
    }

    /// Open connections counted against `src`'s source.
    pub fn source_count(&self, src: A) -> u32 {
        self.per_source
            .get(&src.source(&self.sources))
            .map_or(0, |n| *n)
    }

    /// Remembers that the entry under `key` became evictable at `now`, as `victim` (see
    /// [`Conn::victim`]); at most `cap` keys of each class are kept, the oldest forgotten first.
    pub fn note_candidate(&self, key: Key<A>, victim: Victim, now: Tick, cap: usize) {
        let mut q = self.queue(victim);
        while q.len() >= cap.max(1) {
            q.pop_front();
        }
        q.push_back((key, now));
    }

    fn queue(&self, victim: Victim) -> std::sync::MutexGuard<'_, VecDeque<(Key<A>, Tick)>> {
        self.candidates[victim.idx()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets the remembered candidates whose entries are gone or no longer of their class
    /// (an idle connection established long ago). Filters outside the queues' locks;
    /// candidates remembered meanwhile are newer and stay behind the survivors.
    pub fn prune_candidates(&self) {
        for victim in Victim::ORDER {
            let old = std::mem::take(&mut *self.queue(victim));
            if old.is_empty() {
                continue;
            }
            let kept: VecDeque<_> = old
                .into_iter()
                .filter(|(k, _)| self.map.get(k).is_some_and(|c| c.victim() == Some(victim)))
                .collect();
            let mut q = self.queue(victim);
            let newer = std::mem::replace(&mut *q, kept);
            q.extend(newer);
        }
    }

    /// Forgets every candidate of class `victim` (what a prune in progress looks like to
    /// early drop).
    #[cfg(test)]
    pub(super) fn forget_candidates(&self, victim: Victim) {
        self.queue(victim).clear();
    }

    /// When the oldest remembered candidate of class `victim` became evictable.
    pub fn oldest_candidate(&self, victim: Victim) -> Option<Tick> {
        self.queue(victim).front().map(|(_, t)| *t)
    }

    /// Takes the oldest remembered candidate of class `victim` off its queue and evicts its
    /// entry if it still is of that class (or expired). `None`: the queue is empty;
    /// `Some(evicted)` otherwise, the entry evicted with its key and counters. An evicted
    /// handshake is remembered ([`handshakes`]).
    pub fn evict_oldest(
        &self,
        victim: Victim,
        now: Tick,
        counts: &TableCounts,
    ) -> Option<Option<Evicted<A>>> {
        let (key, _) = self.queue(victim).pop_front()?;
        let still = |c: &Conn| !c.expires.is_after(now) || c.victim() == Some(victim);
        Some(self.evict(key, still, now, counts))
    }

    /// Evicts the entry of class `victim` (or expired) that expires first among the first
    /// `scan` entries of the table (the fallback for candidates the bounded queues lost, or
    /// took away for a moment to prune them). Returns the one evicted, with its key and
    /// counters.
    pub fn evict_scanned(
        &self,
        victim: Victim,
        scan: usize,
        now: Tick,
        counts: &TableCounts,
    ) -> Option<Evicted<A>> {
        let of_class = |c: &Conn| !c.expires.is_after(now) || c.victim() == Some(victim);
        let key = self
            .map
            .iter()
            .take(scan)
            .filter(|e| of_class(e.value()))
            .min_by_key(|e| e.value().expires.ticks_from(now))
            .map(|e| *e.key());
        self.evict(key?, of_class, now, counts)
    }

    /// Evicts the entry under `key` if `pred` holds for it, remembering a handshake.
    fn evict(
        &self,
        key: Key<A>,
        pred: impl FnOnce(&Conn) -> bool,
        now: Tick,
        counts: &TableCounts,
    ) -> Option<Evicted<A>> {
        let (conn, tally) = self.remove_if(&key, pred, counts)?;
        if conn.expires.is_after(now) && handshakes::rememberable(&conn) {
            self.handshakes.remember(key, conn);
        }
        Some((key, conn, tally))
    }

    /// Removes every entry expired at `now`, calling `on_expire` for each (with its
    /// counters). Locks one shard at a time.
    pub fn sweep(
        &self,
        now: Tick,
        counts: &TableCounts,
        mut on_expire: impl FnMut(&Key<A>, &Conn, Counts),
    ) -> usize {
        let mut expired = 0;
        self.map.retain(|key, conn| {
            if conn.expires.is_after(now) {
                return true;
            }
            expired += 1;
            on_expire(key, conn, self.counts(key, conn));
            // `per_source` is a different map: no lock order issue.
            self.release(key, conn);
            false
        });
        counts.entries.fetch_sub(expired, Ordering::Relaxed);
        expired
    }

    /// Visits every live entry.
    pub fn for_each(&self, now: Tick, mut f: impl FnMut(&Key<A>, &Conn)) {
        for e in self.map.iter() {
            if e.value().expires.is_after(now) {
                f(e.key(), e.value());
            }
        }
    }

    /// Visits every live entry with its counters.
    pub fn for_each_counted(&self, now: Tick, mut f: impl FnMut(&Key<A>, &Conn, Counts)) {
        for e in self.map.iter() {
            if e.value().expires.is_after(now) {
                f(e.key(), e.value(), self.counts(e.key(), e.value()));
            }
        }
    }

    /// Applies `f` to every live entry, allowing changes (used by a rule recheck on reload).
    pub fn for_each_mut(&self, now: Tick, mut f: impl FnMut(&Key<A>, &mut Conn)) {
        for mut e in self.map.iter_mut() {
            if e.value().expires.is_after(now) {
                let (k, v) = e.pair_mut();
                f(k, v);
            }
        }
    }

    /// Number of entries, live or not yet swept.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The address of the endpoint that opened `conn`.
fn originator<A: Addr>(key: &Key<A>, conn: &Conn) -> A {
    if conn.has(flags::ORIG_IS_LO) {
        key.lo
    } else {
        key.hi
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::ProtoState;

    fn conn(expires: u32, f: u8) -> Conn {
        Conn {
            expires: Tick(expires),
            flags: f | flags::ORIG_IS_LO,
            rule: Default::default(),
            proto: ProtoState::Datagram(Tick(0)),
            tally: Default::default(),
        }
    }

    /// The key of what [`Table::evict_oldest`] evicted.
    fn evicted(e: Option<Option<Evicted<[u8; 4]>>>) -> Option<Option<Key<[u8; 4]>>> {
        e.map(|e| e.map(|(k, _, _)| k))
    }

    fn key(n: u8) -> Key<[u8; 4]> {
        Key::new(17, [198, 51, 100, n], 1000, [203, 0, 113, 2], 53).0
    }

    #[test]
    fn slots_stay_small() {
        // What the maps store per bucket (dashmap's value wrapper is a transparent
        // `UnsafeCell`), plus one control byte. At 1 M entries on 2 cores the IPv4 table has
        // 8 shards x 2^18 buckets: 89 B x 2^21 = 187 B per connection with the rule tag and
        // the per-direction counters (`examples/conn_memory`); the budget is 192. The
        // per-source map adds 9 B (IPv4) or 21 B (IPv6) per bucket for each distinct source;
        // the counters' side map holds only connections past 4 GiB or 4 G packets.
        use std::mem::size_of;
        assert!(size_of::<(Key<[u8; 4]>, Conn)>() <= 88);
        assert!(size_of::<(Key<[u8; 16]>, Conn)>() <= 112);
        assert!(size_of::<([u8; 4], u32)>() <= 8);
        assert!(size_of::<([u8; 16], u32)>() <= 20);
    }

    #[test]
    fn per_source_limit_and_release() {
        let t = Table::new();
        let c = TableCounts::default();
        let src = [198, 51, 100, 9];
        for port in 0..3 {
            let k = Key::new(17, src, port, [203, 0, 113, 2], 53).0;
            t.insert(k, src, conn(100, 0), 3, &c).expect("room");
        }
        let k4 = Key::new(17, src, 9, [203, 0, 113, 2], 53).0;
        assert_eq!(
            t.insert(k4, src, conn(100, 0), 3, &c),
            Err(InsertError::SourceLimit)
        );
        assert_eq!(t.source_count(src), 3);
        let k0 = Key::new(17, src, 0, [203, 0, 113, 2], 53).0;
        t.remove_if(&k0, |_| true, &c).expect("present");
        assert_eq!(t.source_count(src), 2);
        assert_eq!(c.entries(), 2);
    }

    #[test]
    fn expired_entries_are_invisible_and_swept() {
        let t = Table::new();
        let c = TableCounts::default();
        t.insert(key(1), [198, 51, 100, 1], conn(10, 0), 10, &c)
            .expect("room");
        t.insert(key(2), [198, 51, 100, 2], conn(50, 0), 10, &c)
            .expect("room");
        assert!(t.get_live(&key(1), Tick(5), &c).is_some());
        assert!(t.peek(&key(1), Tick(10)).is_none());
        let mut seen = Vec::new();
        let n = t.sweep(Tick(20), &c, |k, _, _| seen.push(*k));
        assert_eq!((n, seen), (1, vec![key(1)]));
        assert_eq!(c.entries(), 1);
    }

    #[test]
    fn candidates_are_evicted_oldest_first_while_still_evictable() {
        let t = Table::new();
        let c = TableCounts::default();
        for n in 1..=3 {
            t.insert(key(n), [198, 51, 100, n], conn(100, 0), 10, &c)
                .expect("room");
            t.note_candidate(key(n), Victim::First, Tick(u32::from(n)), 10);
        }
        // The first became assured since: skipped (and forgotten).
        t.map.get_mut(&key(1)).expect("present").flags |= flags::ASSURED;
        assert_eq!(t.oldest_candidate(Victim::First), Some(Tick(1)));
        assert_eq!(
            evicted(t.evict_oldest(Victim::First, Tick(5), &c)),
            Some(None)
        );
        assert_eq!(
            evicted(t.evict_oldest(Victim::First, Tick(5), &c)),
            Some(Some(key(2)))
        );
        assert!(t.peek(&key(2), Tick(5)).is_none());
        assert!(t.peek(&key(1), Tick(5)).is_some());
        assert_eq!(t.oldest_candidate(Victim::First), Some(Tick(3)));
        // The queue is bounded: the oldest are forgotten, the scan still finds them.
        t.note_candidate(key(9), Victim::First, Tick(6), 1);
        assert_eq!(t.oldest_candidate(Victim::First), Some(Tick(6)));
        assert_eq!(
            evicted(t.evict_oldest(Victim::First, Tick(7), &c)),
            Some(None),
            "gone"
        );
        assert_eq!(evicted(t.evict_oldest(Victim::First, Tick(7), &c)), None);
        assert_eq!(
            t.evict_scanned(Victim::First, 64, Tick(7), &c)
                .map(|(k, _, _)| k),
            Some(key(3))
        );
        assert!(t.peek(&key(3), Tick(7)).is_none());
        assert!(
            t.evict_scanned(Victim::First, 64, Tick(7), &c).is_none(),
            "assured entries stay"
        );
        assert_eq!(c.entries(), 1);
    }

    #[test]
    fn counters_past_32_bits_spill_and_are_released_with_the_entry() {
        let t = Table::new();
        let c = TableCounts::default();
        t.insert(key(1), [198, 51, 100, 1], conn(100, 0), 10, &c)
            .expect("room");
        {
            let mut e = t.get_live(&key(1), Tick(0), &c).expect("live");
            let (k, conn) = e.pair_mut();
            conn.tally.0[0] = [10, u32::MAX - 99];
            t.account(k, conn, Dir::Original, 1500);
            assert_eq!(t.spilled.load(Ordering::Relaxed), 1);
        }
        let conn = t.peek(&key(1), Tick(0)).expect("live");
        let counts = t.counts(&key(1), &conn);
        assert_eq!(counts.orig_packets, 11);
        assert_eq!(counts.orig_bytes, u64::from(u32::MAX) - 99 + 1500);
        assert_eq!(t.spill.len(), 1);
        let (_, gone) = t.remove_if(&key(1), |_| true, &c).expect("present");
        assert_eq!(gone, counts);
        assert_eq!(t.spill.len(), 0, "the high words go with the entry");
    }
}
