//! What one *source* is, for every per-source decision: the connection limit per source
//! (`conntrack`), scan tracking and host blocks (`scan`, `block`), and the answer rate limits
//! (`ratelimit`). An IPv4 source is one address by default; an IPv6 source is its /64 by
//! default, since one host (or one customer's network) gets a whole /64 and can rotate through
//! its addresses at will: keyed on the /128, each rotation would be a new source with a fresh
//! limit and a fresh scan record. Configured in `[sources]`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::Deserialize;

/// The prefix lengths that make one source (`[sources]`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SourcePrefix {
    /// IPv4 prefix length of one source, 8..=32 (default 32: one address).
    pub ipv4: u8,
    /// IPv6 prefix length of one source, 16..=128 (default 64).
    pub ipv6: u8,
}

impl Default for SourcePrefix {
    fn default() -> Self {
        SourcePrefix { ipv4: 32, ipv6: 64 }
    }
}

/// An invalid `[sources]` value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SourcePrefixError {
    /// A prefix length outside its family's range.
    #[error("sources.{key}: {value} is not a prefix length in {min}..={max}")]
    Length {
        /// `ipv4` or `ipv6`.
        key: &'static str,
        /// The value given.
        value: u8,
        /// Shortest prefix allowed.
        min: u8,
        /// Longest prefix allowed.
        max: u8,
    },
}

impl SourcePrefix {
    /// Checks the lengths (too short a prefix would make a whole provider one source).
    pub fn validate(&self) -> Result<(), SourcePrefixError> {
        for (key, value, min, max) in [("ipv4", self.ipv4, 8, 32), ("ipv6", self.ipv6, 16, 128)] {
            if !(min..=max).contains(&value) {
                return Err(SourcePrefixError::Length {
                    key,
                    value,
                    min,
                    max,
                });
            }
        }
        Ok(())
    }

    /// The source `ip` belongs to, as a network.
    pub fn net(&self, ip: IpAddr) -> IpNet {
        let len = match ip {
            IpAddr::V4(_) => self.ipv4.min(32),
            IpAddr::V6(_) => self.ipv6.min(128),
        };
        IpNet::new(ip, len).map_or(IpNet::from(ip), |n| n.trunc())
    }

    /// The source `ip` belongs to, as its first address (a compact map key).
    pub fn key(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(self.v4(a.octets()))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(self.v6(a.octets()))),
        }
    }

    /// An IPv4 address with the bits past the source prefix cleared.
    pub fn v4(&self, a: [u8; 4]) -> [u8; 4] {
        let len = u32::from(self.ipv4.min(32));
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        (u32::from_be_bytes(a) & mask).to_be_bytes()
    }

    /// An IPv6 address with the bits past the source prefix cleared.
    pub fn v6(&self, a: [u8; 16]) -> [u8; 16] {
        let len = u32::from(self.ipv6.min(128));
        let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
        (u128::from_be_bytes(a) & mask).to_be_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_is_an_ipv4_address_or_an_ipv6_64_by_default() {
        let p = SourcePrefix::default();
        assert_eq!(p.net(ip("198.51.100.7")).to_string(), "198.51.100.7/32");
        assert_eq!(
            p.net(ip("2001:db8:1:2:3:4:5:6")).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(p.key(ip("2001:db8:1:2:ffff::1")), ip("2001:db8:1:2::"));
        assert_eq!(p.key(ip("198.51.100.7")), ip("198.51.100.7"));
        let wide = SourcePrefix { ipv4: 24, ipv6: 48 };
        assert_eq!(wide.key(ip("198.51.100.7")), ip("198.51.100.0"));
        assert_eq!(wide.key(ip("2001:db8:1:2::9")), ip("2001:db8:1::"));
        let exact = SourcePrefix {
            ipv4: 32,
            ipv6: 128,
        };
        assert_eq!(exact.key(ip("2001:db8::9")), ip("2001:db8::9"));
    }

    #[test]
    fn lengths_are_checked() {
        assert!(SourcePrefix::default().validate().is_ok());
        for (ipv4, ipv6) in [(33, 64), (7, 64), (32, 129), (32, 8)] {
            let e = SourcePrefix { ipv4, ipv6 }.validate().unwrap_err();
            assert!(e.to_string().starts_with("sources.ipv"), "{e}");
        }
    }
}
