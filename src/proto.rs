//! IP protocols and ports: the one table of protocol numbers and names, and the port range type,
//! used by the decoder, the rule language, the scan detector, logs and listings alike.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use thiserror::Error;

/// ICMP for IPv4.
pub const ICMP: u8 = 1;
/// TCP.
pub const TCP: u8 = 6;
/// UDP.
pub const UDP: u8 = 17;
/// IPsec authentication header (an IPv4 or IPv6 extension before the transport).
pub const AH: u8 = 51;
/// ICMP for IPv6.
pub const ICMPV6: u8 = 58;
/// SCTP.
pub const SCTP: u8 = 132;
/// UDP-Lite.
pub const UDPLITE: u8 = 136;

/// One known protocol: its number, the names the rule language accepts (the first is the
/// canonical one, shown in listings), and the name iptables LOG prints (`PROTO=`), if any.
struct Known {
    number: u8,
    names: &'static [&'static str],
    log: Option<&'static str>,
}

/// Every protocol statewall knows by name.
const KNOWN: [Known; 14] = [
    Known {
        number: TCP,
        names: &["tcp"],
        log: Some("TCP"),
    },
    Known {
        number: UDP,
        names: &["udp"],
        log: Some("UDP"),
    },
    Known {
        number: ICMP,
        names: &["icmp"],
        log: Some("ICMP"),
    },
    Known {
        number: ICMPV6,
        names: &["icmpv6", "ipv6-icmp"],
        log: Some("ICMPv6"),
    },
    Known {
        number: 2,
        names: &["igmp"],
        log: None,
    },
    Known {
        number: 4,
        names: &["ipip"],
        log: None,
    },
    Known {
        number: 41,
        names: &["ipv6"],
        log: None,
    },
    Known {
        number: 47,
        names: &["gre"],
        log: None,
    },
    Known {
        number: 50,
        names: &["esp"],
        log: None,
    },
    Known {
        number: 51,
        names: &["ah"],
        log: None,
    },
    Known {
        number: 89,
        names: &["ospf"],
        log: None,
    },
    Known {
        number: 112,
        names: &["vrrp"],
        log: None,
    },
    Known {
        number: SCTP,
        names: &["sctp"],
        log: Some("SCTP"),
    },
    Known {
        number: UDPLITE,
        names: &["udplite"],
        log: Some("UDPLITE"),
    },
];

/// The protocol number of a name the rule language accepts (`tcp`, `ipv6-icmp`, `gre`, ...),
/// in any case.
pub fn number(name: &str) -> Option<u8> {
    KNOWN
        .iter()
        .find(|k| k.names.iter().any(|n| n.eq_ignore_ascii_case(name)))
        .map(|k| k.number)
}

/// Every name the rule language accepts, for "did you mean" suggestions.
pub fn names() -> impl Iterator<Item = &'static str> {
    KNOWN.iter().flat_map(|k| k.names.iter().copied())
}

/// Whether packets of this protocol carry source and destination ports.
pub fn has_ports(proto: u8) -> bool {
    matches!(proto, TCP | UDP | SCTP | UDPLITE)
}

/// Display adapter: the canonical lower-case name (`tcp`, `gre`), or the number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Name(pub u8);

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match KNOWN.iter().find(|k| k.number == self.0) {
            Some(k) => f.write_str(k.names[0]),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Display adapter: the name iptables LOG prints in `PROTO=` (`TCP`, `UDP`, `ICMP`, `ICMPv6`),
/// or the number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogName(pub u8);

impl fmt::Display for LogName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match KNOWN
            .iter()
            .find(|k| k.number == self.0)
            .and_then(|k| k.log)
        {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

/// An inclusive range of ports, `lo..=hi` with `lo <= hi`; a single port is `p..=p`.
///
/// Written `80`, `1000-2000` (or `1000:2000`, as iptables writes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "PortRepr")]
pub struct PortRange {
    lo: u16,
    hi: u16,
}

/// Why a port range could not be read.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PortRangeError {
    /// Not a number from 0 to 65535.
    #[error("`{0}` is not a port (0-65535)")]
    NotAPort(String),
    /// The first port of the range is above the last.
    #[error("port range {lo}-{hi} is reversed (write {hi}-{lo})")]
    Reversed {
        /// First port written.
        lo: u16,
        /// Last port written.
        hi: u16,
    },
}

impl PortRange {
    /// The range `lo..=hi`, or `None` when `lo > hi`.
    pub const fn new(lo: u16, hi: u16) -> Option<PortRange> {
        if lo <= hi {
            Some(PortRange { lo, hi })
        } else {
            None
        }
    }

    /// The single port `p`.
    pub const fn single(p: u16) -> PortRange {
        PortRange { lo: p, hi: p }
    }

    /// Every port.
    pub const ALL: PortRange = PortRange { lo: 0, hi: 65535 };

    /// First port.
    pub const fn lo(self) -> u16 {
        self.lo
    }

    /// Last port.
    pub const fn hi(self) -> u16 {
        self.hi
    }

    /// Whether `port` is in the range.
    pub const fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }

    /// Number of ports in the range.
    pub const fn len(self) -> u32 {
        self.hi as u32 - self.lo as u32 + 1
    }

    /// A range is never empty (kept for the `len` convention).
    pub const fn is_empty(self) -> bool {
        false
    }

    /// Whether every port of `other` is in this range.
    pub const fn covers(self, other: PortRange) -> bool {
        self.lo <= other.lo && other.hi <= self.hi
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl FromStr for PortRange {
    type Err = PortRangeError;

    fn from_str(s: &str) -> Result<PortRange, PortRangeError> {
        let port = |w: &str| {
            w.parse::<u16>()
                .map_err(|_| PortRangeError::NotAPort(w.to_owned()))
        };
        match s.split_once(['-', ':']) {
            None => Ok(PortRange::single(port(s)?)),
            Some((a, b)) => {
                let (lo, hi) = (port(a)?, port(b)?);
                PortRange::new(lo, hi).ok_or(PortRangeError::Reversed { lo, hi })
            }
        }
    }
}

/// How a port range is written in configuration files: a number or a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum PortRepr {
    Number(u16),
    Text(String),
}

impl TryFrom<PortRepr> for PortRange {
    type Error = PortRangeError;
    fn try_from(repr: PortRepr) -> Result<PortRange, PortRangeError> {
        match repr {
            PortRepr::Number(p) => Ok(PortRange::single(p)),
            PortRepr::Text(t) => t.parse(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(number("tcp"), Some(TCP));
        assert_eq!(number("ipv6-icmp"), Some(ICMPV6));
        assert_eq!(number("UDP"), Some(UDP));
        assert_eq!(number("nope"), None);
        assert_eq!(Name(ICMPV6).to_string(), "icmpv6");
        assert_eq!(Name(47).to_string(), "gre");
        assert_eq!(Name(253).to_string(), "253");
        assert_eq!(LogName(TCP).to_string(), "TCP");
        assert_eq!(LogName(ICMPV6).to_string(), "ICMPv6");
        assert_eq!(LogName(47).to_string(), "47");
        assert!(names().any(|n| n == "udplite"));
        assert!(has_ports(SCTP) && !has_ports(ICMP));
    }

    #[test]
    fn every_name_maps_back_to_its_number() {
        for k in &KNOWN {
            for n in k.names {
                assert_eq!(number(n), Some(k.number), "{n}");
            }
        }
    }

    #[test]
    fn port_ranges() {
        assert_eq!("80".parse(), Ok(PortRange::single(80)));
        let r: PortRange = "1000-2000".parse().expect("range");
        assert_eq!((r.lo(), r.hi(), r.len()), (1000, 2000, 1001));
        assert_eq!("1000:2000".parse(), Ok(r));
        assert!(r.contains(1000) && r.contains(2000) && !r.contains(2001));
        assert_eq!(r.to_string(), "1000-2000");
        assert_eq!(
            "9-3".parse::<PortRange>(),
            Err(PortRangeError::Reversed { lo: 9, hi: 3 })
        );
        assert!(matches!(
            "70000".parse::<PortRange>(),
            Err(PortRangeError::NotAPort(_))
        ));
        assert!(PortRange::ALL.covers(r) && !r.covers(PortRange::ALL));
        assert_eq!(PortRange::new(5, 4), None);
    }

    #[test]
    fn port_ranges_from_config() {
        #[derive(Deserialize)]
        struct T {
            p: Vec<PortRange>,
        }
        let t: T = serde_json::from_str(r#"{"p":[22,"8000-8100"]}"#).expect("parses");
        assert_eq!(
            t.p,
            vec![
                PortRange::single(22),
                PortRange::new(8000, 8100).expect("ordered")
            ]
        );
    }
}
