//! One event as a JSON object: what `statewall events --json` prints and the event log holds,
//! one object per line.
//!
//! Every object has `time` (RFC 3339, UTC, milliseconds) and `event`:
//!
//! | `event`         | from                                   | fields besides the flow                     |
//! |-----------------|----------------------------------------|---------------------------------------------|
//! | `new`           | [`Event::New`]                         | `state`, `rule`, `label`, `adopted`         |
//! | `destroy`       | [`Event::Destroy`]                     | `reason`, `state`, `rule`, `label`, counters |
//! | `drop`          | [`Event::Drop`]                        | `reason`, `in`, `out`, `len`, `ttl`, `flags` or `icmp_type`/`icmp_code` |
//! | `alert`         | [`Event::Scan`]                        | `kind` (`scan`), `type`, `nmap`, `group`, ports, counts, `action` |
//! | `block`, `unblock`, `block_expired` | [`Event::Block`]   | `src`, `net`, `ttl_secs`, `level`, `reason` |
//! | `rule`          | [`Event::RuleMatch`]                   | `action`, `rule`, `label`                   |
//! | `suppressed`    | [`Event::Suppressed`]                  | `lines`, `seconds`: log lines rate-limited  |
//! | `lost`          | (the stream itself)                    | `events`: how many this reader lost         |
//!
//! The flow is `proto`, `src`, `sport`, `dst`, `dport` (originator first; ports 0 for
//! protocols without them, the echo identifier for ICMP echo flows).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::Stamped;
use crate::block::BlockEvent;
use crate::event::{ConnClosed, ConnOpened, DropEvent, Event, RuleMatch};
use crate::packet::Transport;
use crate::proto;
use crate::rules::RuleInfo;
use crate::scan::ScanAlert;
use crate::time::Civil;
use crate::verdict::Flow;

/// RFC 3339 UTC with milliseconds: `2026-12-02T01:30:05.123Z`.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let base = Civil::from_unix(d.as_secs()).rfc3339();
    let stem = base.trim_end_matches('Z');
    format!("{stem}.{:03}Z", d.subsec_millis())
}

/// The JSON object of one published event.
pub fn to_json(s: &Stamped) -> Value {
    let mut obj = match &s.event {
        Event::New(o) => opened(o),
        Event::Destroy(c) => closed(c),
        Event::Drop(d) => dropped(d),
        Event::Scan(a) => alert(a),
        Event::Block(b) => block(b),
        Event::RuleMatch(m) => rule_match(m),
        Event::Suppressed(x) => {
            let mut m = head("suppressed");
            m.insert("lines".into(), x.lines.into());
            m.insert("seconds".into(), x.seconds.into());
            m
        }
    };
    obj.insert("time".into(), timestamp(s.time).into());
    Value::Object(obj)
}

/// The line telling a reader it lost `n` events.
pub fn lost(n: u64, time: SystemTime) -> Value {
    json!({"time": timestamp(time), "event": "lost", "events": n})
}

fn head(event: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("event".into(), event.into());
    m
}

fn flow_into(m: &mut Map<String, Value>, f: &Flow) {
    m.insert("proto".into(), proto::Name(f.proto).to_string().into());
    m.insert("src".into(), f.src.to_string().into());
    m.insert("sport".into(), f.sport.into());
    m.insert("dst".into(), f.dst.to_string().into());
    m.insert("dport".into(), f.dport.into());
}

fn rule_into(m: &mut Map<String, Value>, rule: Option<&RuleInfo>) {
    let (r, label) = match rule {
        Some(r) => (
            Value::from(format!("{}:{}", r.file, r.line)),
            r.label.clone().map_or(Value::Null, Value::from),
        ),
        None => (Value::Null, Value::Null),
    };
    m.insert("rule".into(), r);
    m.insert("label".into(), label);
}

fn opened(o: &ConnOpened) -> Map<String, Value> {
    let mut m = head("new");
    flow_into(&mut m, &o.flow);
    m.insert("state".into(), o.state.to_string().into());
    rule_into(&mut m, o.rule.as_deref());
    m.insert("adopted".into(), o.adopted.into());
    m
}

fn closed(c: &ConnClosed) -> Map<String, Value> {
    let mut m = head("destroy");
    flow_into(&mut m, &c.record.flow);
    m.insert("reason".into(), c.why.name().into());
    m.insert("state".into(), c.record.state.to_string().into());
    rule_into(&mut m, c.rule.as_deref());
    let n = &c.record.counts;
    m.insert("orig_packets".into(), n.orig_packets.into());
    m.insert("orig_bytes".into(), n.orig_bytes.into());
    m.insert("reply_packets".into(), n.reply_packets.into());
    m.insert("reply_bytes".into(), n.reply_bytes.into());
    m
}

fn dropped(d: &DropEvent) -> Map<String, Value> {
    let mut m = head("drop");
    m.insert("reason".into(), d.reason.name().into());
    let p = &d.packet;
    flow_into(&mut m, &p.flow());
    let iface = |i: Option<crate::event::IfName>| i.map_or(Value::Null, |n| n.to_string().into());
    m.insert("in".into(), iface(p.in_iface));
    m.insert("out".into(), iface(p.out_iface));
    m.insert("len".into(), p.len.into());
    m.insert("ttl".into(), p.ttl.into());
    match &p.transport {
        Transport::Tcp(t) => {
            m.insert("flags".into(), t.flags.to_string().into());
        }
        Transport::Icmp(i) => {
            m.insert("icmp_type".into(), i.icmp_type.into());
            m.insert("icmp_code".into(), i.code.into());
        }
        Transport::Udp { .. } | Transport::Fragment | Transport::Other => {}
    }
    m
}

fn alert(a: &ScanAlert) -> Map<String, Value> {
    let mut m = head("alert");
    m.insert("kind".into(), "scan".into());
    m.insert("type".into(), a.scan_type.name().into());
    m.insert("nmap".into(), a.technique.nmap().into());
    m.insert("src".into(), a.scanner.to_string().into());
    m.insert("group".into(), a.group.to_string().into());
    m.insert("proto".into(), proto::Name(a.proto).to_string().into());
    let targets: Vec<Value> = a.targets.iter().map(|t| t.to_string().into()).collect();
    m.insert("targets".into(), targets.into());
    m.insert("hosts".into(), a.ntargets.into());
    m.insert(
        "ports".into(),
        format!("{}-{}", a.ports.0, a.ports.1).into(),
    );
    m.insert("nports".into(), a.nports.into());
    m.insert("probes".into(), a.probes.into());
    m.insert("rejects".into(), a.rejects.into());
    m.insert("level".into(), a.level.into());
    m.insert("action".into(), a.action.to_string().into());
    m
}

fn block(b: &BlockEvent) -> Map<String, Value> {
    match b {
        BlockEvent::Block {
            src,
            net,
            ttl,
            level,
            reason,
        } => {
            let mut m = head("block");
            m.insert("src".into(), src.to_string().into());
            m.insert("net".into(), net.to_string().into());
            m.insert("ttl_secs".into(), ttl.as_secs().into());
            m.insert("level".into(), (*level).into());
            m.insert("reason".into(), reason.clone().into());
            m
        }
        BlockEvent::Unblock { src, net } => {
            let mut m = head("unblock");
            m.insert("src".into(), src.to_string().into());
            m.insert("net".into(), net.to_string().into());
            m
        }
        BlockEvent::Expire { src, net, level } => {
            let mut m = head("block_expired");
            m.insert("src".into(), src.to_string().into());
            m.insert("net".into(), net.to_string().into());
            m.insert("level".into(), (*level).into());
            m
        }
    }
}

fn rule_match(r: &RuleMatch) -> Map<String, Value> {
    let mut m = head("rule");
    m.insert("action".into(), r.action.to_string().into());
    rule_into(&mut m, Some(&r.rule));
    flow_into(&mut m, &r.packet.flow());
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::{ConnRecord, ConnState, Counts, RuleTag, TcpState};
    use crate::event::{CloseReason, LoggedPacket};
    use crate::packet::{Packet, PacketMeta};
    use crate::testing;
    use crate::verdict::DropReason;
    use std::sync::Arc;
    use std::time::Duration;

    fn at(e: Event) -> Stamped {
        Stamped {
            time: UNIX_EPOCH + Duration::from_millis(1_795_550_042_007),
            event: e,
        }
    }

    fn flow() -> Flow {
        Flow {
            proto: proto::TCP,
            src: [198, 51, 100, 2].into(),
            dst: [203, 0, 113, 2].into(),
            sport: 40000,
            dport: 80,
        }
    }

    fn rule() -> Arc<RuleInfo> {
        let loaded = crate::rules::load_str("gw.rules", "policy drop\nallow tcp label \"web\"\n")
            .expect("rules");
        Arc::new(loaded.policy.rule(0).cloned().expect("rule"))
    }

    #[test]
    fn timestamps_have_milliseconds() {
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_millis(1_795_550_042_007)),
            "2026-11-24T19:54:02.007Z"
        );
    }

    #[test]
    fn connection_events() {
        let new = to_json(&at(Event::New(ConnOpened {
            flow: flow(),
            state: ConnState::Tcp(TcpState::SynSent),
            rule: Some(rule()),
            adopted: false,
        })));
        assert_eq!(
            new,
            json!({"time": "2026-11-24T19:54:02.007Z", "event": "new", "proto": "tcp",
                   "src": "198.51.100.2", "sport": 40000, "dst": "203.0.113.2", "dport": 80,
                   "state": "SYN_SENT", "rule": "gw.rules:2", "label": "web", "adopted": false})
        );
        let gone = to_json(&at(Event::Destroy(ConnClosed {
            record: ConnRecord {
                flow: flow(),
                state: ConnState::Tcp(TcpState::TimeWait),
                rule: RuleTag::default(),
                counts: Counts {
                    orig_packets: 5,
                    orig_bytes: 400,
                    reply_packets: 4,
                    reply_bytes: 3000,
                },
            },
            rule: None,
            why: CloseReason::Expired,
        })));
        assert_eq!(gone["event"], "destroy");
        assert_eq!(gone["reason"], "expired");
        assert_eq!(gone["state"], "TIME_WAIT");
        assert_eq!(gone["rule"], Value::Null);
        assert_eq!(
            (gone["orig_bytes"].as_u64(), gone["reply_packets"].as_u64()),
            (Some(400), Some(4))
        );
    }

    #[test]
    fn drop_events_carry_the_header_fields() {
        let bytes = testing::tcp([198, 51, 100, 2].into(), [203, 0, 113, 2].into())
            .ports(40000, 22)
            .flags(crate::packet::TcpFlags::ACK)
            .build();
        let meta = PacketMeta {
            in_iface: Some("cli0"),
            ..PacketMeta::default()
        };
        let pkt = Packet::decode(&bytes, &meta).expect("decodes");
        let v = to_json(&at(Event::Drop(DropEvent {
            reason: DropReason::NoConnection,
            packet: LoggedPacket::of(&pkt, &meta),
            line: false,
        })));
        assert_eq!(v["event"], "drop");
        assert_eq!(v["reason"], "no_connection");
        assert_eq!(
            (v["src"].as_str(), v["dport"].as_u64()),
            (Some("198.51.100.2"), Some(22))
        );
        assert_eq!(
            (v["in"].as_str(), v["out"].clone()),
            (Some("cli0"), Value::Null)
        );
        assert_eq!(v["flags"], ".");
        let s = to_json(&at(Event::Suppressed(crate::event::Suppressed {
            lines: 5,
            seconds: 3,
        })));
        assert_eq!(
            s,
            json!({"time": "2026-11-24T19:54:02.007Z", "event": "suppressed", "lines": 5, "seconds": 3})
        );
    }

    #[test]
    fn block_events() {
        let src: std::net::IpAddr = [203, 0, 113, 9].into();
        let net = ipnet::IpNet::from(src);
        let v = to_json(&at(Event::Block(BlockEvent::Block {
            src,
            net,
            ttl: Duration::from_secs(600),
            level: 1,
            reason: "manual".into(),
        })));
        assert_eq!(
            v,
            json!({"time": "2026-11-24T19:54:02.007Z", "event": "block", "src": "203.0.113.9",
                   "net": "203.0.113.9/32", "ttl_secs": 600, "level": 1, "reason": "manual"})
        );
        let v = to_json(&at(Event::Block(BlockEvent::Unblock { src, net })));
        assert_eq!(v["event"], "unblock");
        assert_eq!(lost(3, UNIX_EPOCH)["events"], 3);
    }
}
