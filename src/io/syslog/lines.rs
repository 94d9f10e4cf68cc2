//! The typed [`Event`]s as syslog bodies: an upper-case tag, then `KEY=value` pairs as iptables
//! LOG prints them (`SRC= DST= PROTO= SPT= DPT=`), so existing parsers and fail2ban filters read
//! statewall's lines too. The journal (through `tracing`) gets the same bodies.
//!
//! | event                 | body                                                           | severity |
//! |-----------------------|----------------------------------------------------------------|----------|
//! | [`Event::RuleMatch`]  | `RULE action=… rule=FILE:LINE [label="…"] SRC= DST= PROTO= …`  | notice   |
//! | [`Event::Scan`]       | `SCAN type=… nmap=… SRC=… GROUP=… DST=… …` ([`ScanAlert::body`](crate::scan::ScanAlert::body)) | warning |
//! | [`Event::Block`]      | `BLOCK …`, `UNBLOCK …`, `EXPIRE …`                              | warning  |

use crate::alert::{flow_fields, KvLine, Severity};
use crate::block::BlockEvent;
use crate::event::{Event, RuleMatch};

/// The severity an event is logged at.
pub fn severity(event: &Event) -> Severity {
    match event {
        Event::RuleMatch(_) => Severity::Notice,
        Event::Scan(_) | Event::Block(_) => Severity::Warning,
    }
}

/// The syslog body of an event.
pub fn body(event: &Event) -> String {
    match event {
        Event::RuleMatch(m) => rule_line(m),
        Event::Scan(alert) => alert.body(),
        Event::Block(ev) => block_line(ev),
    }
}

/// `RULE action=drop rule=FILE:LINE label="…" SRC=… DST=… PROTO=… SPT=… DPT=…`.
fn rule_line(m: &RuleMatch) -> String {
    let mut line = format!(
        "RULE action={} rule={}:{}",
        m.action, m.rule.file, m.rule.line
    );
    if let Some(label) = &m.rule.label {
        line.push_str(" label=\"");
        line.push_str(label);
        line.push('"');
    }
    let f = m.packet.flow();
    line.push(' ');
    line.push_str(&flow_fields(f.src, f.dst, f.proto, f.sport, f.dport));
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
            body(&Event::Block(block)),
            "BLOCK SRC=198.51.100.2 GROUP=198.51.100.2/32 ttl=600 level=1 reason=portscan"
        );
        let expire = Event::Block(BlockEvent::Expire { src, net, level: 1 });
        assert_eq!(
            body(&expire),
            "EXPIRE SRC=198.51.100.2 GROUP=198.51.100.2/32 level=1"
        );
        assert_eq!(severity(&expire), Severity::Warning);
        let unblock = Event::Block(BlockEvent::Unblock {
            src,
            net: "198.51.100.0/24".parse().expect("net"),
        });
        assert_eq!(
            body(&unblock),
            "UNBLOCK SRC=198.51.100.2 GROUP=198.51.100.0/24"
        );
        let unblock = Event::Block(BlockEvent::Unblock {
            src: ip("2001:db8:bad::7"),
            net: "2001:db8:bad::/64".parse().expect("net"),
        });
        assert_eq!(
            body(&unblock),
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
        p.udp(crate::testing::Side::Client).data(payload).build()
    }

    #[test]
    fn rule_lines() {
        let bytes = udp(b"q");
        let meta = PacketMeta::default();
        let pkt = Packet::decode(&bytes, &meta).expect("decodes");
        let m = RuleMatch {
            rule: rule(Some("dns out")),
            action: RuleAction::Drop,
            packet: LoggedPacket::of(&pkt, &meta),
        };
        let ev = Event::RuleMatch(m.clone());
        assert_eq!(
            body(&ev),
            "RULE action=drop rule=t.rules:2 label=\"dns out\" SRC=198.51.100.2 \
             DST=203.0.113.2 PROTO=UDP SPT=5353 DPT=53"
        );
        assert_eq!(severity(&ev), Severity::Notice);
        let bare = RuleMatch {
            rule: rule(None),
            ..m
        };
        assert_eq!(
            body(&Event::RuleMatch(bare)),
            "RULE action=drop rule=t.rules:2 SRC=198.51.100.2 DST=203.0.113.2 PROTO=UDP \
             SPT=5353 DPT=53"
        );
    }
}
