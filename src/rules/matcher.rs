//! Matchers: what one compiled rule requires of a packet ([`Match`]), and the packet as the
//! rules see it ([`Query`]).

use std::fmt;
use std::net::IpAddr;

use ipnet::{Ipv4Net, Ipv6Net};

use crate::proto::{self, PortRange};

/// The first packet of a new connection, as the rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number: 6 tcp, 17 udp, 1 icmp, 58 icmpv6.
    pub proto: u8,
    /// Source port, 0 when not TCP/UDP.
    pub sport: u16,
    /// Destination port, 0 when not TCP/UDP.
    pub dport: u16,
    /// ICMP/ICMPv6 type, when the packet is ICMP.
    pub icmp_type: Option<u8>,
    /// ICMP/ICMPv6 code, when the packet is ICMP.
    pub icmp_code: Option<u8>,
    /// NFQUEUE input interface name, if known.
    pub in_iface: Option<&'a str>,
    /// NFQUEUE output interface name, if known.
    pub out_iface: Option<&'a str>,
}

/// A set of addresses: `any`, or lists of networks per family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Addrs {
    /// Every address (the lists are then empty once normalized).
    pub any: bool,
    /// IPv4 networks.
    pub v4: Vec<Ipv4Net>,
    /// IPv6 networks.
    pub v6: Vec<Ipv6Net>,
}

impl Addrs {
    /// Every address.
    pub(crate) fn any() -> Addrs {
        Addrs {
            any: true,
            ..Addrs::default()
        }
    }

    /// Sort and merge the networks (an `any` set drops its lists).
    pub(crate) fn normalize(&mut self) {
        if self.any {
            self.v4.clear();
            self.v6.clear();
        } else {
            // Aggregated networks are disjoint; sorted, they allow a binary search.
            self.v4 = Ipv4Net::aggregate(&self.v4);
            self.v4.sort_unstable();
            self.v6 = Ipv6Net::aggregate(&self.v6);
            self.v6.sort_unstable();
        }
    }

    /// Whether `ip` is in the set. Requires [`Addrs::normalize`] to have run: among disjoint
    /// networks, only the one with the highest start at or below `ip` can contain it.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        if self.any {
            return true;
        }
        match ip {
            IpAddr::V4(a) => {
                let i = self.v4.partition_point(|n| n.network() <= a);
                i > 0 && self.v4[i - 1].contains(&a)
            }
            IpAddr::V6(a) => {
                let i = self.v6.partition_point(|n| n.network() <= a);
                i > 0 && self.v6[i - 1].contains(&a)
            }
        }
    }

    /// Can match IPv4 / IPv6 packets.
    pub(crate) fn families(&self) -> (bool, bool) {
        (
            self.any || !self.v4.is_empty(),
            self.any || !self.v6.is_empty(),
        )
    }
}

/// Port ranges, sorted and merged (see [`normalize_ports`]); `None` in a rule means any port.
pub(crate) type Ports = Option<Vec<PortRange>>;

/// Sort `ranges` and merge those that overlap or touch.
pub(crate) fn normalize_ports(mut ranges: Vec<PortRange>) -> Vec<PortRange> {
    ranges.sort_unstable();
    let mut out: Vec<PortRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        if let Some(last) = out.last_mut() {
            // Sorted: `last` starts at or before `r`, so the merge is `last.lo..=max(hi)`.
            if u32::from(r.lo()) <= u32::from(last.hi()) + 1 {
                if let Some(merged) = PortRange::new(last.lo(), last.hi().max(r.hi())) {
                    *last = merged;
                    continue;
                }
            }
        }
        out.push(r);
    }
    out
}

fn ports_contain(ports: &Ports, port: u16) -> bool {
    match ports {
        None => true,
        Some(r) => r.iter().any(|r| r.contains(port)),
    }
}

/// An interface name, or a prefix when written with the trailing `+` wildcard.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Iface {
    /// The name, or the prefix of a wildcard.
    pub name: Box<str>,
    /// Matches every interface whose name starts with `name`.
    pub wildcard: bool,
}

impl Iface {
    fn matches(&self, iface: Option<&str>) -> bool {
        match iface {
            None => false,
            Some(i) if self.wildcard => i.starts_with(&*self.name),
            Some(i) => i == &*self.name,
        }
    }
}

impl fmt::Display for Iface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name, if self.wildcard { "+" } else { "" })
    }
}

/// The static part of a rule: everything but `limit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Match {
    /// `in IFACE`, `None` = any.
    pub in_iface: Option<Iface>,
    /// `out IFACE`, `None` = any.
    pub out_iface: Option<Iface>,
    /// `None` = any protocol.
    pub proto: Option<u8>,
    /// Source addresses.
    pub src: Addrs,
    /// Source ports.
    pub sport: Ports,
    /// Destination addresses.
    pub dst: Addrs,
    /// Destination ports.
    pub dport: Ports,
    /// Bit set of ICMP types; `None` = any type.
    pub icmp_types: Option<[u64; 4]>,
}

/// Whether ICMP type `t` is in the bit set `types`.
pub(crate) fn type_bit(types: &[u64; 4], t: u8) -> bool {
    types[usize::from(t >> 6)] & (1u64 << (t & 63)) != 0
}

impl Match {
    /// Whether the packet `q` matches.
    pub(crate) fn matches(&self, q: &Query<'_>) -> bool {
        match self.proto {
            None => {}
            Some(p) if p != q.proto => return false,
            // ICMP is IPv4's, ICMPv6 is IPv6's: a bogus "IPv6 carrying protocol 1" is neither.
            Some(proto::ICMP) if !q.dst.is_ipv4() => return false,
            Some(proto::ICMPV6) if !q.dst.is_ipv6() => return false,
            Some(_) => {}
        }
        if let Some(types) = &self.icmp_types {
            match q.icmp_type {
                Some(t) if type_bit(types, t) => {}
                _ => return false,
            }
        }
        ports_contain(&self.dport, q.dport)
            && ports_contain(&self.sport, q.sport)
            && self.dst.contains(q.dst)
            && self.src.contains(q.src)
            && self.in_iface.as_ref().is_none_or(|i| i.matches(q.in_iface))
            && self
                .out_iface
                .as_ref()
                .is_none_or(|i| i.matches(q.out_iface))
    }

    /// Whether the rule can match any packet at all (source and destination share a family).
    pub(crate) fn satisfiable(&self) -> bool {
        let (s4, s6) = self.src.families();
        let (d4, d6) = self.dst.families();
        let (mut v4, mut v6) = (s4 && d4, s6 && d6);
        match self.proto {
            Some(proto::ICMP) => v6 = false,
            Some(proto::ICMPV6) => v4 = false,
            _ => {}
        }
        v4 || v6
    }
}

#[cfg(test)]
impl Match {
    /// A rule that matches every packet (a fixture for tests).
    pub(crate) fn any() -> Match {
        Match {
            in_iface: None,
            out_iface: None,
            proto: None,
            src: Addrs::any(),
            sport: None,
            dst: Addrs::any(),
            dport: None,
            icmp_types: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(lo: u16, hi: u16) -> PortRange {
        PortRange::new(lo, hi).unwrap_or_else(|| panic!("{lo}-{hi}"))
    }

    #[test]
    fn interfaces_and_wildcards() {
        let exact = Iface {
            name: "g0".into(),
            wildcard: false,
        };
        let wild = Iface {
            name: "ppp".into(),
            wildcard: true,
        };
        assert!(exact.matches(Some("g0")) && !exact.matches(Some("g01")) && !exact.matches(None));
        assert!(
            wild.matches(Some("ppp0")) && wild.matches(Some("ppp")) && !wild.matches(Some("pp0"))
        );
    }

    #[test]
    fn unsatisfiable_rules_never_match() {
        let mut m = Match::any();
        m.src = Addrs {
            any: false,
            v4: vec!["198.51.100.0/24".parse().unwrap_or_default()],
            v6: vec![],
        };
        m.dst = Addrs {
            any: false,
            v4: vec![],
            v6: vec!["2001:db8::/32".parse().unwrap_or_default()],
        };
        assert!(!m.satisfiable());
        let mut icmp6_v4 = Match::any();
        icmp6_v4.proto = Some(58);
        icmp6_v4.dst = Addrs {
            any: false,
            v4: vec!["203.0.113.2/32".parse().unwrap_or_default()],
            v6: vec![],
        };
        assert!(!icmp6_v4.satisfiable());
        assert!(Match::any().satisfiable());
    }

    #[test]
    fn large_address_sets_are_searched_correctly() {
        let mut set = Addrs::default();
        // Overlapping, unsorted, adjacent networks of mixed sizes.
        for i in (0u32..200).rev() {
            let len = 24 + (i % 9) as u8;
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 + i * 300);
            set.v4.push(
                Ipv4Net::new(addr, len)
                    .map(|n| n.trunc())
                    .unwrap_or_default(),
            );
        }
        set.v4.push("10.0.0.0/20".parse().unwrap_or_default());
        set.v6.push("2001:db8::/48".parse().unwrap_or_default());
        set.v6.push("2001:db8:0:1::/64".parse().unwrap_or_default());
        let raw = set.clone();
        set.normalize();
        for host in (0u32..70_000).step_by(7) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + host));
            let linear = raw
                .v4
                .iter()
                .any(|n| n.contains(&std::net::Ipv4Addr::from(0x0a00_0000 + host)));
            assert_eq!(set.contains(ip), linear, "{ip}");
        }
        assert!(set.contains("2001:db8::1:2:3".parse().unwrap_or(IpAddr::from([0; 4]))));
        assert!(!set.contains("2001:db8:1::1".parse().unwrap_or(IpAddr::from([0; 4]))));
    }

    #[test]
    fn ports_normalize() {
        assert_eq!(
            normalize_ports(vec![
                range(443, 443),
                range(80, 80),
                range(81, 90),
                range(85, 100)
            ]),
            vec![range(80, 100), range(443, 443)]
        );
        assert_eq!(
            normalize_ports(vec![range(65535, 65535), range(0, 65534)]),
            vec![range(0, 65535)]
        );
    }
}
