//! Detector tests, by topic, on virtual time, through [`ScanDetector::on_input`] and
//! [`ScanDetector::on_timer`]. The helpers here build the inputs.

mod bounds;
mod levels;
mod normal_life;
mod probes;

use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::proto::PortRange;

const SCANNER: &str = "198.51.100.2";
const TARGET: &str = "203.0.113.2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ms(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn det(cfg: ScanConfig) -> ScanDetector {
    cfg.validate().unwrap();
    ScanDetector::new(cfg, ProbeMode::Rst)
}

fn medium() -> ScanDetector {
    det(ScanConfig::default())
}

/// A flow from `src:sport` to `dst:dport`.
fn flow_of(proto: u8, (src, sport): (IpAddr, u16), (dst, dport): (IpAddr, u16)) -> Flow {
    Flow {
        proto,
        src,
        dst,
        sport,
        dport,
    }
}

/// The protocol of a probe kind.
fn proto_of(kind: ProbeKind) -> u8 {
    if kind.technique() == Technique::Udp {
        17
    } else {
        6
    }
}

/// A `kind` probe from `src:sport` to `dst:dport`.
fn probe_flow(kind: ProbeKind, src: (IpAddr, u16), dst: (IpAddr, u16)) -> ScanInput {
    let flow = flow_of(proto_of(kind), src, dst);
    ScanInput::Probe { flow, kind }
}

/// A `kind` probe from `src` (source port 50505) to `dst:dport`.
fn probe_from(src: IpAddr, kind: ProbeKind, dst: &str, dport: u16) -> ScanInput {
    probe_flow(kind, (src, 50505), (ip(dst), dport))
}

/// A `kind` probe from SCANNER (source port 50505) to `dst:dport`.
fn probe(kind: ProbeKind, dst: &str, dport: u16) -> ScanInput {
    probe_from(ip(SCANNER), kind, dst, dport)
}

/// A `kind` answer to a probe from `scanner` to `target:port`.
fn answer(scanner: IpAddr, target: IpAddr, proto: u8, port: u16, kind: AnswerKind) -> ScanInput {
    let probe = flow_of(proto, (scanner, 50505), (target, port));
    ScanInput::Answer { probe, kind }
}

/// A RST answering a TCP probe from SCANNER to TARGET:port.
fn rst(port: u16) -> ScanInput {
    answer(ip(SCANNER), ip(TARGET), 6, port, AnswerKind::TcpRst)
}

/// The first reply of `client`'s flow to `server:port`.
fn reply(client: IpAddr, server: IpAddr, proto: u8, port: u16) -> ScanInput {
    let flow = flow_of(proto, (client, 50505), (server, port));
    ScanInput::Reply { flow }
}

/// `client`'s TCP connection to `server:port` completed.
fn established(client: IpAddr, server: IpAddr, port: u16) -> ScanInput {
    let flow = flow_of(6, (client, 50505), (server, port));
    ScanInput::Established { flow }
}

/// The TCP connection `client:sport → server:dport` closed.
fn closed(client: (IpAddr, u16), server: (IpAddr, u16)) -> ScanInput {
    let flow = flow_of(6, client, server);
    ScanInput::Closed { flow }
}

/// Sends `kind` probes to `ports` of TARGET, 1 ms apart from `start`; returns all alerts.
fn scan(
    d: &ScanDetector,
    kind: ProbeKind,
    ports: impl IntoIterator<Item = u16>,
    start: u64,
) -> Vec<ScanAlert> {
    ports
        .into_iter()
        .enumerate()
        .flat_map(|(i, p)| d.on_input(ms(start + i as u64), probe(kind, TARGET, p)))
        .collect()
}

/// Calls `on_timer` every 250 ms over `[from, to]`.
fn ticks(d: &ScanDetector, from: u64, to: u64) -> Vec<ScanAlert> {
    (from..=to)
        .step_by(250)
        .flat_map(|t| d.on_timer(ms(t)))
        .collect()
}
