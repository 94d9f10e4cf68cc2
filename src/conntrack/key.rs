//! Connection keys in canonical order, and the direction of a packet relative to its
//! connection.

use std::fmt::Debug;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::source::SourcePrefix;

/// An address as stored in a key: 4 bytes for IPv4, 16 for IPv6.
pub trait Addr: Copy + Eq + Ord + Hash + Debug + Send + Sync + 'static {
    /// Converts from an [`IpAddr`] of the right family.
    fn from_ip(ip: IpAddr) -> Option<Self>;
    /// Converts back.
    fn to_ip(self) -> IpAddr;
    /// A key of this family as a key of either.
    fn wrap(key: Key<Self>) -> AnyKey;
    /// The source this address belongs to (its first address), for per-source counts.
    fn source(self, p: &SourcePrefix) -> Self;
    /// A key of either family as one of this family.
    fn unwrap(key: AnyKey) -> Option<Key<Self>>;
}

/// A key of either family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnyKey {
    /// An IPv4 flow.
    V4(Key<[u8; 4]>),
    /// An IPv6 flow.
    V6(Key<[u8; 16]>),
}

impl Addr for [u8; 4] {
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(a) => Some(a.octets()),
            IpAddr::V6(_) => None,
        }
    }
    fn to_ip(self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(self))
    }
    fn wrap(key: Key<Self>) -> AnyKey {
        AnyKey::V4(key)
    }
    fn source(self, p: &SourcePrefix) -> Self {
        p.v4(self)
    }
    fn unwrap(key: AnyKey) -> Option<Key<Self>> {
        match key {
            AnyKey::V4(k) => Some(k),
            AnyKey::V6(_) => None,
        }
    }
}

impl Addr for [u8; 16] {
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(a) => Some(a.octets()),
            IpAddr::V4(_) => None,
        }
    }
    fn to_ip(self) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(self))
    }
    fn wrap(key: Key<Self>) -> AnyKey {
        AnyKey::V6(key)
    }
    fn source(self, p: &SourcePrefix) -> Self {
        p.v6(self)
    }
    fn unwrap(key: AnyKey) -> Option<Key<Self>> {
        match key {
            AnyKey::V6(k) => Some(k),
            AnyKey::V4(_) => None,
        }
    }
}

/// A connection key: protocol and both endpoints, the lower (address, port) first.
///
/// For ICMP echo the "port" of both endpoints is the echo identifier; protocols without ports
/// use 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key<A: Addr> {
    /// Lower endpoint address.
    pub lo: A,
    /// Higher endpoint address.
    pub hi: A,
    /// Lower endpoint port.
    pub lo_port: u16,
    /// Higher endpoint port.
    pub hi_port: u16,
    /// IP protocol number.
    pub proto: u8,
}

impl<A: Addr> Key<A> {
    /// The key of a packet from `src:sport` to `dst:dport`, and whether the source is the low
    /// endpoint.
    #[inline]
    pub fn new(proto: u8, src: A, sport: u16, dst: A, dport: u16) -> (Key<A>, bool) {
        if (src, sport) <= (dst, dport) {
            let key = Key {
                lo: src,
                hi: dst,
                lo_port: sport,
                hi_port: dport,
                proto,
            };
            (key, true)
        } else {
            let key = Key {
                lo: dst,
                hi: src,
                lo_port: dport,
                hi_port: sport,
                proto,
            };
            (key, false)
        }
    }

    /// Source and destination endpoints of the direction where `lo_is_src`.
    pub fn endpoints(&self, lo_is_src: bool) -> ((IpAddr, u16), (IpAddr, u16)) {
        let lo = (self.lo.to_ip(), self.lo_port);
        let hi = (self.hi.to_ip(), self.hi_port);
        if lo_is_src {
            (lo, hi)
        } else {
            (hi, lo)
        }
    }
}

/// Direction of a packet relative to the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// From the endpoint that opened the connection.
    Original = 0,
    /// From the other endpoint.
    Reply = 1,
}

impl Dir {
    /// The other direction.
    pub fn flip(self) -> Dir {
        match self {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        }
    }

    /// Index for per-direction arrays.
    pub fn idx(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_share_a_key() {
        let a = [198, 51, 100, 2];
        let b = [203, 0, 113, 2];
        let (k1, lo1) = Key::new(6, a, 40000, b, 80);
        let (k2, lo2) = Key::new(6, b, 80, a, 40000);
        assert_eq!(k1, k2);
        assert!(lo1);
        assert!(!lo2);
        assert_eq!(k1.endpoints(true).0, (IpAddr::from(a), 40000));
    }

    #[test]
    fn same_address_orders_by_port() {
        let a = [203, 0, 113, 2];
        let (k, lo) = Key::new(17, a, 9000, a, 53);
        assert_eq!((k.lo_port, k.hi_port), (53, 9000));
        assert!(!lo);
    }
}
