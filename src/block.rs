//! Auto-block list: sources (single addresses or whole /24 and /64 groups) whose packets are
//! dropped for a while after a scan alert.
//!
//! Pure: time is passed in, nothing is printed; every change comes back as a [`BlockEvent`]
//! (rendered for syslog by [`crate::io::syslog::lines`]). A block lasts `ttl`; a source
//! blocked again while its last block is still remembered gets twice the previous duration, up
//! to `ttl_max`. An offence is remembered for `ttl_max` after its block ends. Addresses on the
//! allowlist are never blocked, even inside a blocked group.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use ipnet::IpNet;

use crate::time::Timestamp;

/// A change of the block list, to be logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockEvent {
    /// `net` is now blocked for `ttl` because of `src`.
    Block {
        /// The address whose behaviour caused the block.
        src: IpAddr,
        /// What is blocked (the address itself or its group).
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

#[derive(Clone, Debug)]
struct Entry {
    src: IpAddr,
    reason: String,
    level: u32,
    ttl: Duration,
    expires: Timestamp,
    /// False once expired or unblocked; the entry stays to remember the offence.
    active: bool,
}

impl Entry {
    fn is_active(&self, now: Timestamp) -> bool {
        self.active && now < self.expires
    }

    /// When the offence is forgotten.
    fn forget_at(&self, memory: Duration) -> Timestamp {
        self.expires.saturating_add(memory)
    }
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<IpNet, Entry>,
    /// Prefix lengths in use, so a lookup tries only those.
    prefixes: BTreeSet<(bool, u8)>,
}

/// The block list. `Sync`: lookups take a read lock, changes a write lock.
#[derive(Debug)]
pub struct Blocklist {
    ttl: Duration,
    ttl_max: Duration,
    cap: usize,
    allow: Vec<IpNet>,
    inner: RwLock<Inner>,
}

impl Blocklist {
    /// A list whose first blocks last `ttl`, repeat blocks up to `ttl_max`, holding at most
    /// `cap` entries (active blocks and remembered offences), never blocking `allow`.
    pub fn new(ttl: Duration, ttl_max: Duration, cap: usize, allow: Vec<IpNet>) -> Blocklist {
        Blocklist {
            ttl,
            ttl_max: ttl_max.max(ttl),
            cap: cap.max(1),
            allow,
            inner: RwLock::new(Inner::default()),
        }
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

    /// An operator's block (`statewall block`): `net` for exactly `ttl`, replacing an active
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
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let previous = match inner.entries.get(&net) {
            Some(e) if e.is_active(now) && fixed_ttl.is_none() => return None,
            Some(e) if now < e.forget_at(self.ttl_max) => e.level,
            _ => 0,
        };
        if !inner.entries.contains_key(&net) && inner.entries.len() >= self.cap {
            self.make_room(&mut inner, now);
        }
        let level = previous.saturating_add(1);
        let ttl = fixed_ttl.unwrap_or_else(|| self.ttl_for(level));
        let entry = Entry {
            src,
            reason: reason.to_owned(),
            level,
            ttl,
            expires: now.saturating_add(ttl),
            active: true,
        };
        inner.entries.insert(net, entry);
        inner
            .prefixes
            .insert((net.addr().is_ipv4(), net.prefix_len()));
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

    /// Drops remembered offences first, then the block closest to its end.
    fn make_room(&self, inner: &mut Inner, now: Timestamp) {
        let before = inner.entries.len();
        inner.entries.retain(|_, e| e.is_active(now));
        if inner.entries.len() < before {
            return;
        }
        let soonest = inner
            .entries
            .iter()
            .min_by_key(|(_, e)| e.expires)
            .map(|(n, _)| *n);
        if let Some(net) = soonest {
            inner.entries.remove(&net);
        }
    }

    /// Is `ip` blocked at `now`? Allowlisted addresses never are.
    pub fn is_blocked(&self, ip: IpAddr, now: Timestamp) -> bool {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        if inner.entries.is_empty() || self.is_allowed(ip) {
            return false;
        }
        inner
            .prefixes
            .iter()
            .filter(|(v4, _)| *v4 == ip.is_ipv4())
            .filter_map(|(_, len)| IpNet::new(ip, *len).ok())
            .any(|net| {
                inner
                    .entries
                    .get(&net.trunc())
                    .is_some_and(|e| e.is_active(now))
            })
    }

    /// Lifts every active block that covers `ip` (its address or group), keeping the offence
    /// in memory.
    pub fn unblock(&self, ip: IpAddr, now: Timestamp) -> Vec<BlockEvent> {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let mut events = Vec::new();
        for (net, e) in inner.entries.iter_mut() {
            if net.contains(&ip) && e.is_active(now) {
                e.active = false;
                e.expires = now;
                events.push(BlockEvent::Unblock {
                    src: e.src,
                    net: *net,
                });
            }
        }
        events
    }

    /// Ends the blocks whose time is up and forgets old offences; call it periodically.
    pub fn expire(&self, now: Timestamp) -> Vec<BlockEvent> {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let mut events = Vec::new();
        for (net, e) in inner.entries.iter_mut() {
            if e.active && now >= e.expires {
                e.active = false;
                events.push(BlockEvent::Expire {
                    src: e.src,
                    net: *net,
                    level: e.level,
                });
            }
        }
        let memory = self.ttl_max;
        inner
            .entries
            .retain(|_, e| e.active || now < e.forget_at(memory));
        let in_use: BTreeSet<(bool, u8)> = inner
            .entries
            .keys()
            .map(|n| (n.addr().is_ipv4(), n.prefix_len()))
            .collect();
        inner.prefixes = in_use;
        events
    }

    /// The active blocks, soonest to end first.
    pub fn list(&self, now: Timestamp) -> Vec<BlockEntry> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<BlockEntry> = inner
            .entries
            .iter()
            .filter(|(_, e)| e.is_active(now))
            .map(|(net, e)| BlockEntry {
                net: *net,
                src: e.src,
                reason: e.reason.clone(),
                level: e.level,
                ttl: e.ttl,
                remaining: e.expires.since(now),
            })
            .collect();
        out.sort_by_key(|e| (e.remaining, e.net));
        out
    }

    /// The configured first-block duration.
    pub fn ttl(&self) -> Duration {
        self.ttl
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
