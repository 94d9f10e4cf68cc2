//! Each technique, its answers and its alerts: stealth shapes, SYN scans (refused, filtered,
//! half-open), UDP scans, sweeps.

use super::*;

#[test]
fn each_stealth_technique_is_named() {
    let cases = [
        (ProbeKind::Null, "-sN"),
        (ProbeKind::Fin, "-sF"),
        (ProbeKind::Xmas, "-sX"),
        (ProbeKind::Maimon, "-sM"),
        (ProbeKind::Ack, "-sA"),
        (ProbeKind::SynFin, "--scanflags=SYNFIN"),
        (ProbeKind::OsProbe, "-O"),
        (ProbeKind::StraySynAck, "--scanflags=SYNACK"),
    ];
    for (kind, nmap) in cases {
        let d = medium();
        assert!(
            scan(&d, kind, 1..5, 0).is_empty(),
            "{kind}: 4 probes are below threshold"
        );
        let alerts = scan(&d, kind, 5..6, 10);
        assert_eq!(alerts.len(), 1, "{kind}");
        let a = &alerts[0];
        assert_eq!(a.technique.nmap(), nmap);
        assert_eq!(
            (a.scan_type, a.level, a.nports, a.ports),
            (ScanType::PortScan, 1, 5, (1, 5))
        );
        assert_eq!(a.kinds, vec![kind]);
    }
}

#[test]
fn alert_body_is_key_value() {
    let d = medium();
    let alerts = scan(&d, ProbeKind::Fin, [22, 80, 443, 1024], 0);
    assert!(alerts.is_empty());
    for p in [22, 80, 443] {
        d.on_input(ms(10), rst(p));
    }
    let alerts = scan(&d, ProbeKind::Fin, [25], 20);
    assert_eq!(
        alerts[0].body(),
        "SCAN type=portscan nmap=-sF SRC=198.51.100.2 GROUP=198.51.100.0/24 DST=203.0.113.2 \
         targets=203.0.113.2 PROTO=TCP ports=22-1024 nports=5 hosts=1 probes=5 rejects=3 flags=fin level=1 action=rst"
    );
}

#[test]
fn syn_scan_of_closed_ports_alerts_on_rejects() {
    let d = medium();
    let mut alerts = Vec::new();
    for p in 1..=10u16 {
        let now = ms(u64::from(p));
        alerts.extend(d.on_input(now, probe(ProbeKind::Syn, TARGET, p)));
        assert!(alerts.is_empty(), "allowed SYNs are only candidates");
        alerts.extend(d.on_input(now, rst(p)));
    }
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(
        (a.scan_type, a.technique, a.rejects, a.nports),
        (ScanType::PortScan, Technique::Syn, 10, 10)
    );
}

#[test]
fn unanswered_syns_become_a_filtered_scan_within_a_second() {
    let d = medium();
    assert!(scan(&d, ProbeKind::Syn, 1..=15, 0).is_empty());
    assert!(ticks(&d, 0, 2_750).is_empty(), "not before answer_timeout");
    let alerts = ticks(&d, 3_000, 4_000);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].scan_type, ScanType::FilteredPortScan);
    assert_eq!(alerts[0].nports, 15);
    assert!(d.on_timer(ms(3_500)).is_empty(), "one alert per window");
}

#[test]
fn half_open_syn_scan() {
    let d = medium();
    let (s, t) = (ip(SCANNER), ip(TARGET));
    let mut alerts = Vec::new();
    for p in 1..=15u16 {
        let now = ms(u64::from(p));
        d.on_input(now, probe(ProbeKind::Syn, TARGET, p));
        d.on_input(now, reply(s, t, 6, p));
        // nmap -sS answers the SYN/ACK with a RST: the connection closes, never established.
        alerts.extend(d.on_input(now, closed((s, 50505), (t, p))));
    }
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        (alerts[0].scan_type, alerts[0].technique),
        (ScanType::PortScan, Technique::Syn)
    );
    assert_eq!(alerts[0].rejects, 0);
    // Without the close, the timeout resolves them too.
    let d = medium();
    for p in 1..=15u16 {
        d.on_input(ms(0), probe(ProbeKind::Syn, TARGET, p));
        d.on_input(ms(1), reply(s, t, 6, p));
    }
    assert!(ticks(&d, 0, 2_750).is_empty());
    assert_eq!(ticks(&d, 3_000, 4_000).len(), 1);
}

#[test]
fn udp_scan_and_normal_dns() {
    let d = medium();
    let mut alerts = Vec::new();
    for p in 1..=10u16 {
        alerts.extend(d.on_input(ms(0), probe(ProbeKind::UdpNew, TARGET, p)));
        let unreachable = AnswerKind::IcmpUnreachable;
        alerts.extend(d.on_input(ms(1), answer(ip(SCANNER), ip(TARGET), 17, p, unreachable)));
    }
    assert_eq!(alerts.len(), 1);
    assert_eq!((alerts[0].technique.nmap(), alerts[0].proto), ("-sU", 17));
    assert!(alerts[0].body().contains("PROTO=UDP"));

    // A client asking 50 resolvers, all answering.
    let d = medium();
    let client = ip("10.0.0.5");
    for i in 0..50u8 {
        let server = IpAddr::from([192, 0, 2, i]);
        d.on_input(
            ms(0),
            probe_flow(ProbeKind::UdpNew, (client, 5353), (server, 53)),
        );
        d.on_input(ms(20), reply(client, server, 17, 53));
    }
    assert!(ticks(&d, 0, 10_000).is_empty());
}

#[test]
fn port_sweep_of_dropped_syns() {
    let d = medium();
    let mut alerts = Vec::new();
    for i in 1..=10u8 {
        let dst = format!("203.0.113.{i}");
        alerts.extend(d.on_input(ms(u64::from(i)), probe(ProbeKind::SynDropped, &dst, 22)));
    }
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(
        (a.scan_type, a.ntargets, a.nports, a.ports),
        (ScanType::FilteredPortSweep, 10, 1, (22, 22))
    );
    assert_eq!(a.targets.len(), MAX_LISTED_TARGETS);
    assert!(
        a.body()
            .contains("DST=203.0.113.1 targets=203.0.113.1,203.0.113.2,"),
        "{}",
        a.body()
    );
}

#[test]
fn answers_to_stealth_probes_count_as_rejects() {
    let d = medium();
    scan(&d, ProbeKind::Null, 1..=4, 0);
    for p in 1..=4 {
        d.on_input(ms(5), rst(p));
    }
    let alerts = scan(&d, ProbeKind::Null, [5], 10);
    assert_eq!(
        (alerts[0].rejects, alerts[0].scan_type),
        (4, ScanType::PortScan)
    );
    // Answers for probes never seen change nothing.
    assert!(d
        .on_input(
            ms(5),
            answer(ip("192.0.2.9"), ip(TARGET), 6, 1, AnswerKind::TcpRst)
        )
        .is_empty());
}
