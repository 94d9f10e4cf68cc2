//! Scenario tests: nmap-like scans and normal traffic driven through the public API the engine
//! uses (flag classification, scan detector, answer rate limits, RST/ICMP builders, block list,
//! syslog formatting), on virtual time.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use statewall::alert::Severity;
use statewall::config::{Facility, Format};
use statewall::event::Event;
use statewall::io::syslog::lines;
use statewall::io::syslog::{format_line, Header};
use statewall::packet::{Packet, PacketMeta, TcpFlags};
use statewall::ratelimit::{ProbesConfig, RateLimiter};
use statewall::respond::{
    rst_answering, rst_packet, unreachable_answering, unreachable_packet, ReplyOptions,
};
use statewall::scan::{
    AlertAction, AnswerKind, ProbeKind, ScanAlert, ScanConfig, ScanDetector, ScanInput, ScanType,
    Technique,
};
use statewall::testing;
use statewall::verdict::{Flow, ProbeMode};
use statewall::Timestamp;

const SCANNER: &str = "198.51.100.2";
const TARGET: &str = "203.0.113.2";
const OPTS: ReplyOptions = ReplyOptions {
    ttl: 64,
    ip_id: 0x4242,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The flow `src:sport → dst:dport`.
fn flow_of(proto: u8, (src, sport): (IpAddr, u16), (dst, dport): (IpAddr, u16)) -> Flow {
    Flow {
        proto,
        src,
        dst,
        sport,
        dport,
    }
}

fn us(micros: u64) -> Timestamp {
    Timestamp::from_nanos(micros * 1000)
}

/// The gateway as the engine would drive it: policy allows only `open` ports on TARGET;
/// everything else is dropped by policy and answered per `[probes]`.
struct Gateway {
    scan: ScanDetector,
    limiter: RateLimiter,
    respond: ProbeMode,
    open: Vec<u16>,
    alerts: Vec<ScanAlert>,
    answered: usize,
    limited: usize,
}

impl Gateway {
    fn new(scan: ScanConfig, probes: ProbesConfig, open: &[u16]) -> Gateway {
        scan.validate().unwrap();
        probes.validate().unwrap();
        Gateway {
            scan: ScanDetector::new(scan, probes.respond),
            limiter: RateLimiter::new(&probes, statewall::source::SourcePrefix::default()),
            respond: probes.respond,
            open: open.to_vec(),
            alerts: Vec::new(),
            answered: 0,
            limited: 0,
        }
    }

    /// A TCP segment from the scanner with no connection behind it.
    fn tcp(&mut self, dst: &str, sport: u16, dport: u16, flags: u8, now: Timestamp) {
        let Some(kind) = ProbeKind::from_tcp_flags(TcpFlags(flags)) else {
            return;
        };
        let (src, dst) = (ip(SCANNER), ip(dst));
        let allowed = kind == ProbeKind::Syn && self.open.contains(&dport);
        let kind = if kind == ProbeKind::Syn && !allowed {
            ProbeKind::SynDropped
        } else {
            kind
        };
        let flow = flow_of(6, (src, sport), (dst, dport));
        let scan = &self.scan;
        self.alerts
            .extend(scan.on_input(now, ScanInput::Probe { flow, kind }));
        if allowed {
            // The server answers SYN/ACK; nmap -sS resets instead of completing.
            self.alerts
                .extend(scan.on_input(now, ScanInput::Reply { flow }));
            self.alerts
                .extend(scan.on_input(now, ScanInput::Closed { flow }));
            return;
        }
        if self.respond == ProbeMode::Drop {
            return;
        }
        let probe = testing::tcp(src, dst)
            .ports(sport, dport)
            .flags(flags)
            .seq(0x1000)
            .ack(0x2000)
            .window(1024)
            .build();
        if self.limiter.try_take(src, now).is_err() {
            self.limited += 1;
            return;
        }
        let pkt = Packet::decode(&probe, &PacketMeta::default()).expect("decodes");
        let tcp = pkt.tcp().expect("a TCP segment");
        let rst = rst_answering(src, dst, tcp).expect("a RST for every non-RST probe");
        let rst = rst_packet(&rst, &OPTS).expect("a RST packet");
        assert_eq!(rst.len(), 40);
        self.answered += 1;
        let kind = AnswerKind::TcpRst;
        self.alerts.extend(
            self.scan
                .on_input(now, ScanInput::Answer { probe: flow, kind }),
        );
    }

    /// A UDP datagram from the scanner to a closed port, answered with ICMP port unreachable.
    fn udp(&mut self, dport: u16, now: Timestamp) {
        let (src, dst) = (ip(SCANNER), ip(TARGET));
        let flow = flow_of(17, (src, 61000), (dst, dport));
        let kind = ProbeKind::UdpDropped;
        self.alerts
            .extend(self.scan.on_input(now, ScanInput::Probe { flow, kind }));
        let datagram = testing::udp(src, dst).ports(61000, dport).build();
        if self.limiter.try_take(src, now).is_ok() {
            let pkt = Packet::decode(&datagram, &PacketMeta::default()).expect("decodes");
            let answer = unreachable_answering(&pkt).expect("an ICMP error");
            let icmp = unreachable_packet(&answer, &OPTS).expect("an ICMP error packet");
            assert_eq!(&icmp[28..], &datagram[..]);
            self.answered += 1;
            let kind = AnswerKind::IcmpUnreachable;
            self.alerts.extend(
                self.scan
                    .on_input(now, ScanInput::Answer { probe: flow, kind }),
            );
        }
    }

    fn tick_until(&mut self, from_ms: u64, to_ms: u64) {
        for t in (from_ms..=to_ms).step_by(250) {
            self.alerts
                .extend(self.scan.on_timer(Timestamp::from_millis(t)));
        }
    }

    fn levels(&self) -> Vec<(ScanType, Technique, u8)> {
        self.alerts
            .iter()
            .map(|a| (a.scan_type, a.technique, a.level))
            .collect()
    }
}

/// nmap -T4 -sS on the default 1000 ports, ~1 probe per ms, two ports open.
#[test]
fn nmap_syn_scan_is_answered_completely_and_reported_with_escalation() {
    let mut gw = Gateway::new(ScanConfig::default(), ProbesConfig::default(), &[22, 80]);
    for (i, port) in (1..=1000u16).enumerate() {
        gw.tcp(
            TARGET,
            40123,
            port,
            TcpFlags::SYN,
            us(1_000_000 + i as u64 * 1000),
        );
    }
    // nmap retransmits a few probes it thinks were lost.
    for (i, port) in (900..=1000u16).enumerate() {
        gw.tcp(
            TARGET,
            40123,
            port,
            TcpFlags::SYN,
            us(2_100_000 + i as u64 * 1000),
        );
    }
    assert_eq!(gw.limited, 0);
    assert_eq!(gw.answered, 998 + 101);
    gw.tick_until(2_000, 10_000);
    assert_eq!(
        gw.levels(),
        [1, 2, 3, 4].map(|l| (ScanType::PortScan, Technique::Syn, l)),
        "{:#?}",
        gw.alerts
    );
    let last = gw.alerts.last().unwrap();
    assert_eq!(last.rejects, 300);
    assert!(last.body().starts_with("SCAN type=portscan nmap=-sS SRC=198.51.100.2 GROUP=198.51.100.0/24 DST=203.0.113.2 targets=203.0.113.2 PROTO=TCP"));
}

/// Each stealth scan is recognised by its nmap name, and all its probes are answered.
#[test]
fn nmap_stealth_scans_are_named() {
    let cases = [
        (0, "-sN"),
        (TcpFlags::FIN, "-sF"),
        (TcpFlags::FIN | TcpFlags::PSH | TcpFlags::URG, "-sX"),
        (TcpFlags::FIN | TcpFlags::ACK, "-sM"),
        (TcpFlags::ACK, "-sA"),
    ];
    for (flags, nmap) in cases {
        let mut gw = Gateway::new(ScanConfig::default(), ProbesConfig::default(), &[]);
        for (i, port) in (1..=1000u16).enumerate() {
            gw.tcp(TARGET, 40123, port, flags, us(i as u64 * 1000));
        }
        assert_eq!(gw.answered, 1000, "{nmap}");
        let names: Vec<(&str, u8)> = gw
            .alerts
            .iter()
            .map(|a| (a.technique.nmap(), a.level))
            .collect();
        assert_eq!(names, [(nmap, 1), (nmap, 2), (nmap, 3), (nmap, 4)]);
    }
}

#[test]
fn nmap_udp_scan() {
    let mut gw = Gateway::new(ScanConfig::default(), ProbesConfig::default(), &[]);
    for port in 1..=100u16 {
        gw.udp(port, Timestamp::from_millis(u64::from(port) * 10));
    }
    let types: Vec<_> = gw
        .alerts
        .iter()
        .map(|a| (a.technique.nmap(), a.scan_type, a.level))
        .collect();
    assert_eq!(
        types,
        [
            ("-sU", ScanType::PortScan, 1),
            ("-sU", ScanType::PortScan, 2),
            ("-sU", ScanType::PortScan, 3)
        ]
    );
}

/// A sweep of one port over a /24 with `respond = "drop"`: nothing answers, so it is filtered.
#[test]
fn silent_port_sweep_is_filtered() {
    let probes = ProbesConfig {
        respond: ProbeMode::Drop,
        ..Default::default()
    };
    let mut gw = Gateway::new(ScanConfig::default(), probes, &[]);
    for host in 1..=254u16 {
        let dst = format!("203.0.113.{host}");
        gw.tcp(
            &dst,
            40123,
            3389,
            TcpFlags::SYN,
            Timestamp::from_millis(u64::from(host) * 4),
        );
    }
    gw.tick_until(0, 5_000);
    let levels = gw.levels();
    assert_eq!(
        levels,
        [1, 2, 3].map(|l| (ScanType::FilteredPortSweep, Technique::Syn, l))
    );
    assert!(gw.alerts.iter().all(|a| a.action == AlertAction::Drop));
    assert_eq!(gw.alerts[2].ntargets, 100);
}

/// A FIN scan alerts and never blocks (forgeable); a connect scan → level 2 alert → block list
/// entry → syslog line.
#[test]
fn auto_block_and_syslog_line() {
    let cfg = ScanConfig {
        block: true,
        ..Default::default()
    };
    let blocklist = cfg.blocklist().unwrap();
    let mut gw = Gateway::new(cfg, ProbesConfig::default(), &[]);
    for port in 1..=20u16 {
        gw.tcp(
            TARGET,
            40123,
            port,
            TcpFlags::FIN,
            Timestamp::from_millis(u64::from(port)),
        );
    }
    let fin = gw.alerts.first().expect("a FIN scan alert").clone();
    assert!(
        gw.alerts.iter().all(|a| a.block.is_none()),
        "{:?}",
        gw.alerts
    );
    // Handshakes completed to 45 ports of the target: the scanner answered every SYN/ACK.
    let (src, dst) = (ip(SCANNER), ip(TARGET));
    for port in 1..=45u16 {
        let t = Timestamp::from_millis(100 + u64::from(port));
        let flow = flow_of(6, (src, 41000 + port), (dst, port));
        let kind = ProbeKind::Syn;
        gw.alerts
            .extend(gw.scan.on_input(t, ScanInput::Probe { flow, kind }));
        gw.alerts
            .extend(gw.scan.on_input(t, ScanInput::Reply { flow }));
        gw.alerts
            .extend(gw.scan.on_input(t, ScanInput::Established { flow }));
    }
    let alert = gw
        .alerts
        .iter()
        .find(|a| a.action == AlertAction::Block)
        .unwrap();
    assert_eq!(alert.level, 2);
    let net = alert.block.unwrap();
    let event = blocklist
        .block(
            alert.scanner,
            net,
            alert.scan_type.name(),
            Timestamp::from_secs(1),
        )
        .unwrap();
    assert_eq!(
        lines::body(&Event::Block(event)).as_deref(),
        Some("BLOCK SRC=198.51.100.2 GROUP=198.51.100.2/32 ttl=600 level=1 reason=portscan")
    );
    assert!(blocklist.is_blocked(ip(SCANNER), Timestamp::from_secs(2)));
    assert!(!blocklist.is_blocked(ip("198.51.100.3"), Timestamp::from_secs(2)));

    let header = Header {
        format: Format::Rfc5424,
        facility: Facility::Auth,
        host: Some("gw"),
        tag: "statewall",
        pid: 1,
        pen: 32473,
        zone: &statewall::time::Zone::UTC,
    };
    let line = format_line(
        &header,
        Severity::Warning,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1),
        &fin.body(),
    );
    assert!(line.starts_with("<36>1 1970-01-01T00:00:01.000000Z gw statewall 1 SCAN [statewall@32473 type=\"portscan\" nmap=\"-sF\" SRC=\"198.51.100.2\""), "{line}");
    assert!(alert.body().contains("nmap=-sS"), "{}", alert.body());
}

/// A busy client's normal day: HTTPS to many hosts, DNS, a refused port, connections that close
/// and leave late FIN/ACKs behind, servers' late ACKs. Nothing is reported.
#[test]
fn normal_life_raises_nothing() {
    let scan = ScanDetector::new(ScanConfig::default(), ProbeMode::Rst);
    let client = ip("10.0.0.5");
    let mut alerts = Vec::new();
    let mut now_ms = 0u64;
    for round in 0..20u16 {
        for h in 0..50u8 {
            let server = IpAddr::from([192, 0, 2, h]);
            let sport = 30000 + round * 100 + u16::from(h);
            let t = Timestamp::from_millis(now_ms);
            let flow = flow_of(6, (client, sport), (server, 443));
            let kind = ProbeKind::Syn;
            alerts.extend(scan.on_input(t, ScanInput::Probe { flow, kind }));
        }
        // A page load: all SYNs leave before the first SYN/ACK comes back.
        for h in 0..50u8 {
            let server = IpAddr::from([192, 0, 2, h]);
            let sport = 30000 + round * 100 + u16::from(h);
            let t = Timestamp::from_millis(now_ms + 40);
            let flow = flow_of(6, (client, sport), (server, 443));
            alerts.extend(scan.on_input(t, ScanInput::Reply { flow }));
            alerts.extend(scan.on_input(t, ScanInput::Established { flow }));
            let closed = Timestamp::from_millis(now_ms + 500);
            alerts.extend(scan.on_input(closed, ScanInput::Closed { flow }));
            // Late segments after the close, both directions.
            let late = Timestamp::from_millis(now_ms + 2_000);
            for (src, dst, sp, dp, flags) in [
                (client, server, sport, 443, TcpFlags::FIN | TcpFlags::ACK),
                (client, server, sport, 443, TcpFlags::ACK),
                (server, client, 443, sport, TcpFlags::ACK),
            ] {
                let kind = ProbeKind::from_tcp_flags(TcpFlags(flags)).unwrap();
                let flow = flow_of(6, (src, sp), (dst, dp));
                alerts.extend(scan.on_input(late, ScanInput::Probe { flow, kind }));
            }
            let dns = flow_of(17, (client, sport), (ip("192.0.2.53"), 53));
            let kind = ProbeKind::UdpNew;
            alerts.extend(scan.on_input(t, ScanInput::Probe { flow: dns, kind }));
            alerts.extend(scan.on_input(t, ScanInput::Reply { flow: dns }));
        }
        // One refused connection attempt per round, always the same port.
        let refused = flow_of(6, (client, 50000 + round), (ip(TARGET), 8443));
        let t = Timestamp::from_millis(now_ms);
        let kind = ProbeKind::Syn;
        alerts.extend(scan.on_input(
            t,
            ScanInput::Probe {
                flow: refused,
                kind,
            },
        ));
        let kind = AnswerKind::TcpRst;
        alerts.extend(scan.on_input(
            t,
            ScanInput::Answer {
                probe: refused,
                kind,
            },
        ));
        for t in (now_ms..now_ms + 15_000).step_by(250) {
            alerts.extend(scan.on_timer(Timestamp::from_millis(t)));
        }
        now_ms += 15_000;
    }
    assert!(alerts.is_empty(), "{:#?}", alerts);
}
