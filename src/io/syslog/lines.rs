//! The typed [`Event`]s as syslog bodies. Packets (drop, reject and rule lines) in the
//! kernel's `-j LOG` format ([`super::iptables`]) after a prefix, like `--log-prefix`, so that
//! psad, fail2ban, CrowdSec and SIEMs read them as they read the kernel's; summaries (SCAN,
//! BLOCK, SUPPRESSED) as an upper-case tag and `KEY=value` pairs. The journal gets the same
//! bodies.
//!
//! | event                 | body                                                             | severity |
//! |-----------------------|------------------------------------------------------------------|----------|
//! | [`Event::Drop`]       | `DROP IN=… OUT=… MAC=… SRC=… … URGP=0 REASON=no_connection` (`REJECT …` for `policy_reject`) | notice |
//! | [`Event::RuleMatch`]  | `RULE action=… rule=FILE:LINE [label="…"] IN=… … [REASON=policy_drop]` | notice |
//! | [`Event::Scan`]       | `SCAN type=… nmap=… SRC=… GROUP=… DST=… targets=… …` ([`ScanAlert::body`](crate::scan::ScanAlert::body)) | warning |
//! | [`Event::Block`]      | `BLOCK …`, `UNBLOCK …`, `EXPIRE …`                                | warning  |
//! | [`Event::Suppressed`] | `SUPPRESSED lines=N seconds=S`                                    | warning  |
//!
//! A packet line has exactly one `IN=` and is one line per packet, as psad expects; the drop
//! reason is its last key. A dropped packet that a `log` rule decided gets its RULE line only
//! (with `REASON=`), never a second DROP line.

use super::iptables::write_packet;
use crate::alert::{KvLine, Severity};
use crate::block::BlockEvent;
use crate::event::{DropEvent, Event, LoggedPacket, RuleMatch};
use crate::rules::RuleAction;
use crate::verdict::DropReason;

/// The prefixes of packet lines (`[syslog] drop_prefix`, `reject_prefix`), written right
/// before `IN=` as iptables' `--log-prefix` is (include the trailing space).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefixes {
    /// Before dropped packets (default `"DROP "`).
    pub drop: String,
    /// Before rejected packets, `policy_reject` (default `"REJECT "`).
    pub reject: String,
}

impl Default for Prefixes {
    fn default() -> Self {
        Prefixes {
            drop: "DROP ".to_owned(),
            reject: "REJECT ".to_owned(),
        }
    }
}

/// The severity an event is logged at.
pub fn severity(event: &Event) -> Severity {
    match event {
        Event::RuleMatch(_) | Event::Drop(_) => Severity::Notice,
        Event::Scan(_) | Event::Block(_) | Event::Suppressed(_) => Severity::Warning,
        Event::New(_) | Event::Destroy(_) => Severity::Info,
    }
}

/// The syslog body of an event, with the default prefixes.
pub fn body(event: &Event) -> Option<String> {
    render(event, &Prefixes::default())
}

/// The syslog body of an event, packet lines with `prefixes`; `None` for the events syslog
/// does not carry: connection events, and drops whose line is not due (`[syslog] drops`,
/// the drop-line rate limits), which only the event stream shows.
pub fn render(event: &Event, prefixes: &Prefixes) -> Option<String> {
    Some(match event {
        Event::RuleMatch(m) => rule_line(m),
        Event::Scan(alert) => alert.body(),
        Event::Block(ev) => block_line(ev),
        Event::Drop(d) if d.line => drop_line(d, prefixes),
        Event::Suppressed(s) => KvLine::new("SUPPRESSED")
            .kv("lines", s.lines)
            .kv("seconds", s.seconds)
            .finish(),
        Event::Drop(_) | Event::New(_) | Event::Destroy(_) => return None,
    })
}

/// `PREFIX` + the packet's fields + `REASON=…`.
fn drop_line(d: &DropEvent, prefixes: &Prefixes) -> String {
    let prefix = if d.reason == DropReason::PolicyReject {
        &prefixes.reject
    } else {
        &prefixes.drop
    };
    let mut line = String::with_capacity(256);
    line.push_str(prefix);
    packet_with_reason(&mut line, &d.packet, Some(d.reason));
    line
}

/// The packet's fields (each followed by a space, as the kernel writes them), then
/// `REASON=…` when there is one; no trailing space.
fn packet_with_reason(line: &mut String, p: &LoggedPacket, reason: Option<DropReason>) {
    write_packet(line, p);
    match reason {
        Some(r) => {
            line.push_str("REASON=");
            line.push_str(r.name());
        }
        None => {
            let end = line.trim_end().len();
            line.truncate(end);
        }
    }
}

/// `RULE action=drop rule=FILE:LINE label="…" IN=… OUT=… … URGP=0 REASON=policy_drop`
/// (no `REASON=` for `allow` rules: nothing was dropped).
fn rule_line(m: &RuleMatch) -> String {
    let mut line = KvLine::new("RULE");
    line.kv("action", m.action)
        .kv("rule", format_args!("{}:{}", m.rule.file, m.rule.line));
    let mut line = line.finish();
    if let Some(label) = &m.rule.label {
        // Always quoted (labels are free text), `"` and `\` escaped, no control characters.
        line.push_str(" label=\"");
        for c in label.chars() {
            match c {
                '"' | '\\' => {
                    line.push('\\');
                    line.push(c);
                }
                c if c.is_control() => line.push(' '),
                c => line.push(c),
            }
        }
        line.push('"');
    }
    line.push(' ');
    let reason = match m.action {
        RuleAction::Allow => None,
        RuleAction::Drop => Some(DropReason::PolicyDrop),
        RuleAction::Reject => Some(DropReason::PolicyReject),
    };
    packet_with_reason(&mut line, &m.packet, reason);
    line
}

/// `BLOCK SRC=… GROUP=… ttl=… level=… reason=…`, `UNBLOCK SRC=… GROUP=…` or
/// `EXPIRE SRC=… GROUP=… level=…`.
fn block_line(ev: &BlockEvent) -> String {
    match ev {
        BlockEvent::Block {
            src,
            net,
            ttl,
            level,
            reason,
        } => KvLine::new("BLOCK")
            .kv("SRC", src)
            .kv("GROUP", net)
            .kv("ttl", ttl.as_secs())
            .kv("level", level)
            .kv("reason", reason)
            .finish(),
        BlockEvent::Unblock { src, net } => KvLine::new("UNBLOCK")
            .kv("SRC", src)
            .kv("GROUP", net)
            .finish(),
        BlockEvent::Expire { src, net, level } => KvLine::new("EXPIRE")
            .kv("SRC", src)
            .kv("GROUP", net)
            .kv("level", level)
            .finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(event: &Event) -> String {
        body(event).expect("a syslog line")
    }
    use crate::event::LoggedPacket;
    use crate::packet::{Packet, PacketMeta};
    use crate::rules::{RuleAction, RuleInfo};
    use std::net::IpAddr;
    use std::sync::Arc;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn block_lines() {
        let src = ip("198.51.100.2");
        let net = "198.51.100.2/32".parse().expect("net");
        let block = BlockEvent::Block {
            src,
            net,
            ttl: Duration::from_secs(600),
            level: 1,
            reason: "portscan".into(),
        };
        assert_eq!(
            line(&Event::Block(block)),
            "BLOCK SRC=198.51.100.2 GROUP=198.51.100.2/32 ttl=600 level=1 reason=portscan"
        );
        let expire = Event::Block(BlockEvent::Expire { src, net, level: 1 });
        assert_eq!(
            line(&expire),
            "EXPIRE SRC=198.51.100.2 GROUP=198.51.100.2/32 level=1"
        );
        assert_eq!(severity(&expire), Severity::Warning);
        let unblock = Event::Block(BlockEvent::Unblock {
            src,
            net: "198.51.100.0/24".parse().expect("net"),
        });
        assert_eq!(
            line(&unblock),
            "UNBLOCK SRC=198.51.100.2 GROUP=198.51.100.0/24"
        );
        let unblock = Event::Block(BlockEvent::Unblock {
            src: ip("2001:db8:bad::7"),
            net: "2001:db8:bad::/64".parse().expect("net"),
        });
        assert_eq!(
            line(&unblock),
            "UNBLOCK SRC=2001:db8:bad::7 GROUP=2001:db8:bad::/64"
        );
    }

    fn rule(label: Option<&str>) -> Arc<RuleInfo> {
        let loaded =
            crate::rules::load_str("t.rules", "policy allow\ndrop udp log\n").expect("rules");
        let mut info = loaded.policy.rule(0).cloned().expect("the rule");
        info.label = label.map(str::to_owned);
        Arc::new(info)
    }

    fn udp(payload: &[u8]) -> Vec<u8> {
        let p = crate::testing::Pair::V4.ports(5353, 53);
        p.udp(crate::testing::Side::Client)
            .data(payload)
            .id(4321)
            .dont_fragment()
            .build()
    }

    #[test]
    fn rule_lines() {
        let bytes = udp(b"q");
        let meta = PacketMeta {
            in_iface: Some("g0"),
            out_iface: Some("g1"),
            ..PacketMeta::default()
        };
        let pkt = Packet::decode(&bytes, &meta).expect("decodes");
        let m = RuleMatch {
            rule: rule(Some("dns \"out\"")),
            action: RuleAction::Drop,
            packet: LoggedPacket::of(&pkt, &meta),
        };
        let ev = Event::RuleMatch(m.clone());
        assert_eq!(
            line(&ev),
            "RULE action=drop rule=t.rules:2 label=\"dns \\\"out\\\"\" IN=g0 OUT=g1 MAC= \
             SRC=198.51.100.2 DST=203.0.113.2 LEN=29 TOS=0x00 PREC=0x00 TTL=64 ID=4321 DF \
             PROTO=UDP SPT=5353 DPT=53 LEN=9 REASON=policy_drop"
        );
        assert_eq!(severity(&ev), Severity::Notice);
        let allowed = RuleMatch {
            rule: rule(None),
            action: RuleAction::Allow,
            packet: LoggedPacket::of(&pkt, &PacketMeta::default()),
        };
        assert_eq!(
            line(&Event::RuleMatch(allowed)),
            "RULE action=allow rule=t.rules:2 IN= OUT= SRC=198.51.100.2 DST=203.0.113.2 \
             LEN=29 TOS=0x00 PREC=0x00 TTL=64 ID=4321 DF PROTO=UDP SPT=5353 DPT=53 LEN=9"
        );
    }

    fn probe(flags: u8) -> LoggedPacket {
        let bytes = crate::testing::Pair::V4
            .ports(40000, 22)
            .tcp(crate::testing::Side::Client, flags, 1, 0)
            .window(1024)
            .id(54321)
            .dont_fragment()
            .build();
        let meta = PacketMeta {
            in_iface: Some("eth0"),
            mac: Some([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0]),
            ..PacketMeta::default()
        };
        let pkt = Packet::decode(&bytes, &meta).expect("decodes");
        LoggedPacket::of(&pkt, &meta)
    }

    #[test]
    fn drop_and_reject_lines() {
        let drop = Event::Drop(DropEvent {
            reason: DropReason::TcpXmas,
            packet: probe(0x29),
            line: true,
        });
        let expected = "DROP IN=eth0 OUT= MAC=02:00:00:00:00:01:02:00:00:00:00:02:08:00 \
                        SRC=198.51.100.2 DST=203.0.113.2 LEN=40 TOS=0x00 PREC=0x00 TTL=64 ID=54321 \
                        DF PROTO=TCP SPT=40000 DPT=22 WINDOW=1024 RES=0x00 URG PSH FIN URGP=0 \
                        REASON=tcp_xmas";
        assert_eq!(line(&drop), expected);
        assert_eq!(severity(&drop), Severity::Notice);
        let reject = Event::Drop(DropEvent {
            reason: DropReason::PolicyReject,
            packet: probe(0x02),
            line: true,
        });
        let prefixes = Prefixes {
            drop: "sw-drop: ".into(),
            reject: "sw-reject: ".into(),
        };
        let line = render(&reject, &prefixes).expect("a line");
        assert!(line.starts_with("sw-reject: IN=eth0 OUT= MAC="), "{line}");
        assert!(
            line.ends_with(" RES=0x00 SYN URGP=0 REASON=policy_reject"),
            "{line}"
        );
        assert!(render(&drop, &prefixes)
            .expect("a line")
            .starts_with("sw-drop: IN=eth0 "));
        // A drop only the event stream wants has no line.
        let streamed = Event::Drop(DropEvent {
            reason: DropReason::NoConnection,
            packet: probe(0x10),
            line: false,
        });
        assert_eq!(body(&streamed), None);
    }

    #[test]
    fn suppressed_lines() {
        let ev = Event::Suppressed(crate::event::Suppressed {
            lines: 118,
            seconds: 5,
        });
        assert_eq!(line(&ev), "SUPPRESSED lines=118 seconds=5");
        assert_eq!(severity(&ev), Severity::Warning);
    }
}
