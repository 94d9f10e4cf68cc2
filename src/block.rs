//! Block list: sources (one source, or its whole group) whose packets are dropped for a
//! while after an alert that proved them hostile (see `crate::scan`: only evidence a spoofer
//! cannot produce blocks), and networks an operator blocked (`statewall block`, fail2ban or
//! CrowdSec actions), which are blocked both ways: what they send and traffic to them.
//!
//! Pure: time is passed in, nothing is printed; every change comes back as a [`BlockEvent`]
//! (rendered for syslog by [`crate::io::syslog::lines`]). A block lasts `ttl`; a source
//! blocked again while its last block is still remembered gets twice the previous duration, up
//! to `ttl_max`. An offence is remembered for `ttl_max` after its block ends. Addresses on the
//! allowlist are never blocked, even inside a blocked group.
//!
//! Every packet asks [`Blocklist::is_blocked`], so that path is O(1) and takes no lock a
//! change holds: the active blocks are a sharded map looked up once per prefix length in use
//! (a bit set, usually one or two lengths), with an atomic count that makes an empty list
//! free. Changes, the history of offences and the expiry order live behind one mutex that no
//! packet ever waits for; expiry pops what is due from an ordered index (O(log n) per block),
//! and a full list makes room the same way, never by scanning.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dashmap::DashMap;
use ipnet::IpNet;

use crate::time::Timestamp;

/// A change of the block list, to be logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockEvent {
    /// `net` is now blocked for `ttl` because of `src`.
    Block {
        /// The address whose behaviour caused the block.
        src: IpAddr,
        /// What is blocked (the source or its group).
        net: IpNet,
        /// How long the block lasts.
        ttl: Duration,
        /// 1 for a first offence, 2 for the second (double TTL), ...
        level: u32,
        /// Why, e.g. `portscan`.
        reason: String,
    },
    /// `net` was unblocked by an operator.
    Unblock {
        /// The address that caused the block.
        src: IpAddr,
        /// What was blocked.
        net: IpNet,
    },
    /// The block of `net` ran out.
    Expire {
        /// The address that caused the block.
        src: IpAddr,
        /// What was blocked.
        net: IpNet,
        /// The level the block had.
        level: u32,
    },
}

/// One active block, as listed by [`Blocklist::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockEntry {
    /// What is blocked.
    pub net: IpNet,
    /// The address that caused it.
    pub src: IpAddr,
    /// Why.
    pub reason: String,
    /// Offence count (1 = first block).
    pub level: u32,
    /// Full duration of the block.
    pub ttl: Duration,
    /// Time left.
    pub remaining: Duration,
}

/// What a packet lookup needs of an active block.
#[derive(Clone, Copy, Debug)]
struct Active {
    /// End of the block (the lookup checks it: a block is over on time, timer or not).
    expires: Timestamp,
    /// The blocked net contains allowlisted addresses: check the allowlist on a hit.
    spares_some: bool,
    /// An operator's block: traffic to the net is dropped too, not only what it sends.
    both_ways: bool,
}

/// An offence: an active block, or a past one still remembered.
#[derive(Clone, Debug)]
struct Offence {
    src: IpAddr,
    reason: String,
    level: u32,
    ttl: Duration,
    /// End of the block (or when it was lifted).
    expires: Timestamp,
    /// False once expired or unblocked; the offence stays to be remembered.
    active: bool,
}

/// Everything but the per-packet lookup, behind one mutex.
#[derive(Debug, Default)]
struct State {
    /// Active blocks and remembered offences.
    offences: HashMap<IpNet, Offence>,
    /// Active blocks by end time.
    by_end: BTreeSet<(Timestamp, IpNet)>,
    /// Remembered (inactive) offences by the time they are forgotten.
    by_forget: BTreeSet<(Timestamp, IpNet)>,
    /// Active blocks per (IPv4?, prefix length), to keep the lookup's bit set exact.
    per_prefix: HashMap<(bool, u8), usize>,
}

/// The block list. `Sync`: lookups are lock-free for changes (sharded map reads), changes take
/// one mutex.
#[derive(Debug)]
pub struct Blocklist {
    ttl: Duration,
    ttl_max: Duration,
    cap: usize,
    allow: Vec<IpNet>,
    /// Active blocks, for the per-packet lookup.
    active: DashMap<IpNet, Active, ahash::RandomState>,
    /// Number of active blocks (0: every lookup answers at once).
    count: AtomicUsize,
    /// Number of active blocks that also drop traffic to their net (operators' blocks).
    count_both_ways: AtomicUsize,
    /// Prefix lengths with an active block: IPv4 lengths 0..=32 in word 0, IPv6 lengths
    /// 0..=128 in words 1..=3.
    lengths: [AtomicU64; 4],
    state: Mutex<State>,
}

/// The bit of a prefix length in [`Blocklist::lengths`].
fn length_bit(v4: bool, len: u8) -> (usize, u64) {
    let i = usize::from(len) + if v4 { 0 } else { 64 };
    (i / 64, 1 << (i % 64))
}

impl Blocklist {
    /// A list whose first blocks last `ttl`, repeat blocks up to `ttl_max`, holding at most
    /// `cap` offences (active blocks and remembered ones), never blocking `allow`.
    pub fn new(ttl: Duration, ttl_max: Duration, cap: usize, allow: Vec<IpNet>) -> Blocklist {
        Blocklist {
            ttl,
            ttl_max: ttl_max.max(ttl),
            cap: cap.max(1),
            allow,
            active: DashMap::with_hasher(ahash::RandomState::new()),
            count: AtomicUsize::new(0),
            count_both_ways: AtomicUsize::new(0),
            lengths: Default::default(),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_allowed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|n| n.contains(&ip))
    }

    /// Blocks `net` (which must contain `src`) because of `src`. Returns the event, or `None`
    /// when it is already blocked, allowlisted as a whole, or does not contain `src`.
    pub fn block(
        &self,
        src: IpAddr,
        net: IpNet,
        reason: &str,
        now: Timestamp,
    ) -> Option<BlockEvent> {
        self.insert(src, net, reason, None, now)
    }

    /// An operator's block (`statewall block`): `net` for exactly `ttl`, in both directions
    /// (what it sends and traffic to it, see [`Blocklist::is_blocked_to`]), replacing an active
    /// block of the same network (so a repeated ban sets the new duration). `None` when `net`
    /// is allowlisted as a whole.
    pub fn block_for(
        &self,
        net: IpNet,
        reason: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Option<BlockEvent> {
        self.insert(net.addr(), net, reason, Some(ttl), now)
    }

    fn insert(
        &self,
        src: IpAddr,
        net: IpNet,
        reason: &str,
        fixed_ttl: Option<Duration>,
        now: Timestamp,
    ) -> Option<BlockEvent> {
        let net = net.trunc();
        if !net.contains(&src) || self.allow.iter().any(|a| a.contains(&net)) {
            return None;
        }
        let mut st = self.state();
        let previous = match st.offences.get(&net) {
            Some(o) if o.active && now < o.expires && fixed_ttl.is_none() => return None,
            Some(o) if o.active => {
                // Over but not retired yet by the timer, or an operator's block replacing
                // an active one: retire it now (its level counts).
                let o = o.clone();
                self.retire(&mut st, net, &o, now);
                o.level
            }
            Some(o) if now < o.expires.saturating_add(self.ttl_max) => o.level,
            _ => 0,
        };
        if !st.offences.contains_key(&net) && st.offences.len() >= self.cap {
            self.make_room(&mut st, now);
        }
        if let Some(old) = st.offences.get(&net) {
            let forget = old.expires.saturating_add(self.ttl_max);
            st.by_forget.remove(&(forget, net));
        }
        let level = previous.saturating_add(1);
        let ttl = fixed_ttl.unwrap_or_else(|| self.ttl_for(level));
        let expires = now.saturating_add(ttl);
        st.offences.insert(
            net,
            Offence {
                src,
                reason: reason.to_owned(),
                level,
                ttl,
                expires,
                active: true,
            },
        );
        st.by_end.insert((expires, net));
        self.activate(&mut st, net, expires, fixed_ttl.is_some());
        Some(BlockEvent::Block {
            src,
            net,
            ttl,
            level,
            reason: reason.to_owned(),
        })
    }

    /// `ttl` doubled for each earlier offence, at most `ttl_max`.
    fn ttl_for(&self, level: u32) -> Duration {
        let factor = 1u32
            .checked_shl(level.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.ttl.saturating_mul(factor).min(self.ttl_max)
    }

    /// Makes the per-packet lookup see `net` blocked until `expires`.
    fn activate(&self, st: &mut State, net: IpNet, expires: Timestamp, both_ways: bool) {
        let spares_some = self
            .allow
            .iter()
            .any(|a| net.contains(&a.addr()) || a.contains(&net.addr()));
        self.active.insert(
            net,
            Active {
                expires,
                spares_some,
                both_ways,
            },
        );
        if both_ways {
            self.count_both_ways.fetch_add(1, Ordering::SeqCst);
        }
        let key = (net.addr().is_ipv4(), net.prefix_len());
        let n = st.per_prefix.entry(key).or_insert(0);
        *n += 1;
        if *n == 1 {
            let (word, bit) = length_bit(key.0, key.1);
            self.lengths[word].fetch_or(bit, Ordering::SeqCst);
        }
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    /// Removes `net` from the per-packet lookup.
    fn deactivate(&self, st: &mut State, net: IpNet) {
        let Some((_, gone)) = self.active.remove(&net) else {
            return;
        };
        self.count.fetch_sub(1, Ordering::SeqCst);
        if gone.both_ways {
            self.count_both_ways.fetch_sub(1, Ordering::SeqCst);
        }
        let key = (net.addr().is_ipv4(), net.prefix_len());
        if let Some(n) = st.per_prefix.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.per_prefix.remove(&key);
                let (word, bit) = length_bit(key.0, key.1);
                self.lengths[word].fetch_and(!bit, Ordering::SeqCst);
            }
        }
    }

    /// Ends the active block of `net` (offence `o`), remembering the offence.
    fn retire(&self, st: &mut State, net: IpNet, o: &Offence, end: Timestamp) {
        st.by_end.remove(&(o.expires, net));
        self.deactivate(st, net);
        if let Some(off) = st.offences.get_mut(&net) {
            off.active = false;
            off.expires = end.min(off.expires);
            let forget = off.expires.saturating_add(self.ttl_max);
            st.by_forget.insert((forget, net));
        }
    }

    /// Frees one place: the offence forgotten soonest, else the block ending soonest.
    fn make_room(&self, st: &mut State, now: Timestamp) {
        if let Some(&(at, net)) = st.by_forget.iter().next() {
            st.by_forget.remove(&(at, net));
            st.offences.remove(&net);
            return;
        }
        if let Some(&(at, net)) = st.by_end.iter().next() {
            if let Some(o) = st.offences.get(&net).cloned() {
                self.retire(st, net, &o, now.min(at));
            }
            let forget = st
                .offences
                .get(&net)
                .map(|o| o.expires.saturating_add(self.ttl_max));
            if let Some(forget) = forget {
                st.by_forget.remove(&(forget, net));
            }
            st.offences.remove(&net);
        }
    }

    /// Is `ip` blocked at `now`? Allowlisted addresses never are. O(prefix lengths in use),
    /// no lock that a change holds.
    pub fn is_blocked(&self, ip: IpAddr, now: Timestamp) -> bool {
        self.count.load(Ordering::Relaxed) > 0 && self.lookup(ip, now, false)
    }

    /// Is traffic *to* `ip` blocked at `now`? Only operators' blocks ([`Blocklist::block_for`])
    /// drop it: a scan's block drops what the scanner sends, never others' traffic to it.
    pub fn is_blocked_to(&self, ip: IpAddr, now: Timestamp) -> bool {
        self.count_both_ways.load(Ordering::Relaxed) > 0 && self.lookup(ip, now, true)
    }

    /// Looks `ip` up in every prefix length in use; `both_ways`: only operators' blocks count.
    fn lookup(&self, ip: IpAddr, now: Timestamp, both_ways: bool) -> bool {
        let (v4, words) = match ip {
            IpAddr::V4(_) => (true, 0..1),
            IpAddr::V6(_) => (false, 1..4),
        };
        for word in words {
            let mut bits = self.lengths[word].load(Ordering::Relaxed);
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let i = word * 64 + b;
                let len = if v4 { i } else { i - 64 };
                let Ok(net) = IpNet::new(ip, len as u8) else {
                    continue;
                };
                let hit = self.active.get(&net.trunc()).map(|a| *a.value());
                if let Some(a) = hit {
                    if now < a.expires
                        && (a.both_ways || !both_ways)
                        && !(a.spares_some && self.is_allowed(ip))
                    {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// Whether any block is active (ended blocks count until [`Blocklist::expire`] retires
    /// them).
    pub fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Lifts every active block that covers `ip` (its address or group), keeping the offence
    /// in memory.
    pub fn unblock(&self, ip: IpAddr, now: Timestamp) -> Vec<BlockEvent> {
        let mut st = self.state();
        let covering: Vec<IpNet> = st
            .per_prefix
            .keys()
            .filter(|(v4, _)| *v4 == ip.is_ipv4())
            .filter_map(|(_, len)| IpNet::new(ip, *len).ok().map(|n| n.trunc()))
            .collect();
        let mut events = Vec::new();
        for net in covering {
            let Some(o) = st.offences.get(&net).cloned() else {
                continue;
            };
            if o.active && now < o.expires {
                self.retire(&mut st, net, &o, now);
                events.push(BlockEvent::Unblock { src: o.src, net });
            }
        }
        events
    }

    /// Ends the blocks whose time is up and forgets old offences; call it periodically. Costs
    /// O(log n) per block that ends or offence forgotten, nothing for the others.
    pub fn expire(&self, now: Timestamp) -> Vec<BlockEvent> {
        let mut st = self.state();
        let mut events = Vec::new();
        while let Some(&(at, net)) = st.by_end.iter().next() {
            if at > now {
                break;
            }
            let Some(o) = st.offences.get(&net).cloned() else {
                st.by_end.remove(&(at, net));
                continue;
            };
            self.retire(&mut st, net, &o, at);
            events.push(BlockEvent::Expire {
                src: o.src,
                net,
                level: o.level,
            });
        }
        while let Some(&(at, net)) = st.by_forget.iter().next() {
            if at > now {
                break;
            }
            st.by_forget.remove(&(at, net));
            if st.offences.get(&net).is_some_and(|o| !o.active) {
                st.offences.remove(&net);
            }
        }
        events
    }

    /// The active blocks, soonest to end first (for the control socket: O(n), never on a
    /// packet's way).
    pub fn list(&self, now: Timestamp) -> Vec<BlockEntry> {
        let st = self.state();
        st.by_end
            .iter()
            .filter(|(end, _)| now < *end)
            .filter_map(|(_, net)| {
                let o = st.offences.get(net)?;
                Some(BlockEntry {
                    net: *net,
                    src: o.src,
                    reason: o.reason.clone(),
                    level: o.level,
                    ttl: o.ttl,
                    remaining: o.expires.since(now),
                })
            })
            .collect()
    }

    /// Number of offences held (active blocks and remembered ones): at most the capacity.
    pub fn len(&self) -> usize {
        self.state().offences.len()
    }

    /// Whether no offence is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The configured first-block duration.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Holds the change lock for `f`'s duration (tests: lookups must not wait for it).
    #[cfg(test)]
    fn with_state_locked<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = self.state();
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::source_group;

    const TTL: Duration = Duration::from_secs(600);
    const MAX: Duration = Duration::from_secs(3600);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn list(allow: &[&str]) -> Blocklist {
        Blocklist::new(
            TTL,
            MAX,
            100,
            allow.iter().map(|a| a.parse().unwrap()).collect(),
        )
    }

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_secs(secs)
    }

    #[test]
    fn operator_blocks_drop_both_ways_scan_blocks_only_what_the_source_sends() {
        let b = list(&[]);
        let scanner = ip("198.51.100.2");
        let banned = ip("198.51.100.7");
        b.block(scanner, IpNet::from(scanner), "portscan", at(1))
            .unwrap();
        assert!(b.is_blocked(scanner, at(2)));
        assert!(
            !b.is_blocked_to(scanner, at(2)),
            "others may still reach it"
        );
        b.block_for(IpNet::from(banned), "manual", TTL, at(1))
            .unwrap();
        assert!(b.is_blocked(banned, at(2)));
        assert!(b.is_blocked_to(banned, at(2)));
        // An operator's block over the scan's makes it both ways; lifting it ends both.
        b.block_for(IpNet::from(scanner), "manual", TTL, at(3))
            .unwrap();
        assert!(b.is_blocked_to(scanner, at(4)));
        assert_eq!(b.unblock(banned, at(5)).len(), 1);
        assert!(!b.is_blocked_to(banned, at(6)));
        assert!(!b.is_blocked(banned, at(6)));
        assert_eq!(b.unblock(scanner, at(7)).len(), 1);
        assert!(!b.is_blocked_to(scanner, at(8)));
        assert_eq!(b.count_both_ways.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn block_then_expire() {
        let b = list(&[]);
        let src = ip("198.51.100.2");
        let ev = b.block(src, IpNet::from(src), "portscan", at(10)).unwrap();
        assert_eq!(
            ev,
            BlockEvent::Block {
                src,
                net: "198.51.100.2/32".parse().unwrap(),
                ttl: TTL,
                level: 1,
                reason: "portscan".into()
            }
        );
        assert!(b.is_blocked(src, at(11)));
        assert!(!b.is_blocked(ip("198.51.100.3"), at(11)));
        assert_eq!(
            b.block(src, IpNet::from(src), "portscan", at(12)),
            None,
            "already blocked"
        );
        assert!(b.expire(at(609)).is_empty());
        assert!(
            !b.is_blocked(src, at(610)),
            "ends on time even before expire() runs"
        );
        let events = b.expire(at(610));
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0],
            BlockEvent::Expire {
                src,
                net: "198.51.100.2/32".parse().unwrap(),
                level: 1
            }
        );
        assert!(b.list(at(610)).is_empty());
    }

    #[test]
    fn groups_cover_their_members() {
        let b = list(&[]);
        let src = ip("2001:db8:1::2");
        b.block(src, source_group(src), "portsweep", at(0)).unwrap();
        assert!(b.is_blocked(ip("2001:db8:1::99"), at(1)));
        assert!(!b.is_blocked(ip("2001:db8:2::2"), at(1)));
        assert!(!b.is_blocked(ip("198.51.100.2"), at(1)));
        // A group that does not contain the source is refused.
        assert_eq!(
            b.block(src, "10.0.0.0/8".parse().unwrap(), "x", at(0)),
            None
        );
    }

    #[test]
    fn repeat_offenders_get_doubling_ttls_up_to_the_max() {
        let b = list(&[]);
        let src = ip("198.51.100.2");
        let net = IpNet::from(src);
        let mut now = 0;
        let mut ttls = Vec::new();
        for _ in 0..5 {
            let Some(BlockEvent::Block { ttl, level, .. }) = b.block(src, net, "portscan", at(now))
            else {
                panic!("not blocked")
            };
            ttls.push((ttl.as_secs(), level));
            now += ttl.as_secs();
            b.expire(at(now));
        }
        assert_eq!(ttls, [(600, 1), (1200, 2), (2400, 3), (3600, 4), (3600, 5)]);
        // After ttl_max without offence, the history is forgotten.
        now += MAX.as_secs();
        b.expire(at(now));
        let Some(BlockEvent::Block { level, .. }) = b.block(src, net, "portscan", at(now)) else {
            panic!("not blocked")
        };
        assert_eq!(level, 1);
    }

    #[test]
    fn allowlisted_addresses_are_never_blocked() {
        let b = list(&["198.51.100.7/32", "203.0.113.0/24"]);
        assert_eq!(
            b.block(
                ip("203.0.113.5"),
                "203.0.113.5/32".parse().unwrap(),
                "x",
                at(0)
            ),
            None
        );
        let src = ip("198.51.100.2");
        b.block(src, source_group(src), "portscan", at(0)).unwrap();
        assert!(b.is_blocked(ip("198.51.100.8"), at(1)));
        assert!(
            !b.is_blocked(ip("198.51.100.7"), at(1)),
            "allowlisted member of a blocked group"
        );
    }

    #[test]
    fn unblock_lifts_but_remembers() {
        let b = list(&[]);
        let src = ip("198.51.100.2");
        b.block(src, source_group(src), "portscan", at(0)).unwrap();
        let events = b.unblock(ip("198.51.100.9"), at(5));
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0],
            BlockEvent::Unblock {
                src,
                net: "198.51.100.0/24".parse().unwrap()
            }
        );
        assert!(!b.is_blocked(src, at(6)));
        assert!(b.unblock(src, at(6)).is_empty());
        let Some(BlockEvent::Block { level, .. }) = b.block(src, source_group(src), "x", at(7))
        else {
            panic!("not blocked")
        };
        assert_eq!(level, 2);
    }

    #[test]
    fn lookups_never_wait_for_a_change() {
        // The old list took a read lock every packet while expire() and a full list's
        // make_room() scanned every entry under the write lock.
        let b = std::sync::Arc::new(list(&[]));
        let src = ip("198.51.100.2");
        b.block(src, IpNet::from(src), "x", at(0)).unwrap();
        let b2 = std::sync::Arc::clone(&b);
        let answer = b.with_state_locked(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(b2.is_blocked(src, at(1)));
            });
            rx.recv_timeout(Duration::from_secs(10))
        });
        assert_eq!(answer, Ok(true), "a lookup waited for the change lock");
    }

    #[test]
    fn prefix_lengths_come_and_go_with_their_blocks() {
        let b = list(&[]);
        assert!(!b.any());
        let v6 = ip("2001:db8:1::2");
        let net64: IpNet = "2001:db8:1::/64".parse().unwrap();
        b.block(v6, net64, "x", at(0)).unwrap();
        b.block(
            ip("198.51.100.2"),
            "198.51.100.2/32".parse().unwrap(),
            "x",
            at(5),
        )
        .unwrap();
        assert!(b.is_blocked(ip("2001:db8:1::ffff"), at(1)));
        assert!(!b.is_blocked(ip("2001:db8:2::2"), at(1)));
        assert!(b.is_blocked(ip("198.51.100.2"), at(6)));
        assert_eq!(b.expire(at(600)).len(), 1);
        assert!(!b.is_blocked(v6, at(600)));
        assert!(b.any(), "the IPv4 block is still active");
        assert_eq!(b.expire(at(605)).len(), 1);
        assert!(!b.any());
        assert_eq!(
            b.lengths
                .iter()
                .map(|w| w.load(Ordering::SeqCst))
                .sum::<u64>(),
            0
        );
        // Offences are remembered, then forgotten ttl_max after their end.
        assert_eq!(b.len(), 2);
        b.expire(at(605 + MAX.as_secs()));
        assert!(b.is_empty());
    }

    #[test]
    fn history_stays_within_the_cap() {
        let b = Blocklist::new(TTL, MAX, 50, Vec::new());
        let mut now = 0;
        for i in 0..2000u32 {
            let src = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            b.block(src, IpNet::from(src), "x", at(now)).unwrap();
            now += 1;
            b.expire(at(now));
            assert!(b.len() <= 50, "{}", b.len());
        }
        assert!(b.list(at(now)).len() <= 50);
    }

    #[test]
    fn list_is_bounded_and_sorted() {
        let b = Blocklist::new(TTL, MAX, 3, Vec::new());
        for i in 0..10u8 {
            let src = IpAddr::from([10, 0, 0, i]);
            assert!(b
                .block(src, IpNet::from(src), "x", at(u64::from(i)))
                .is_some());
        }
        let listed = b.list(at(20));
        assert_eq!(listed.len(), 3);
        assert!(listed.windows(2).all(|w| w[0].remaining <= w[1].remaining));
        assert_eq!(listed[2].src, ip("10.0.0.9"), "newest block kept");
        assert_eq!(listed[2].remaining, Duration::from_secs(589));
        assert_eq!(listed[2].ttl, TTL);
    }
}
