//! What must not count: completed connections, retries, late segments of closed connections
//! (tombstones: servers' late replies too), allow lists.

use super::*;

#[test]
fn completed_connections_are_normal_life() {
    let d = medium();
    let client = ip("10.0.0.5");
    // 40 hosts on 443 and 1000 connections to one port, all completing.
    for i in 0..40u8 {
        let server = IpAddr::from([192, 0, 2, i]);
        let syn = probe_flow(
            ProbeKind::Syn,
            (client, 40000 + u16::from(i)),
            (server, 443),
        );
        assert!(d.on_input(ms(0), syn).is_empty());
    }
    for i in 0..40u8 {
        let server = IpAddr::from([192, 0, 2, i]);
        d.on_input(ms(30), reply(client, server, 6, 443));
        d.on_input(ms(31), established(client, server, 443));
    }
    for sport in 0..1000u16 {
        let server = ip(TARGET);
        d.on_input(
            ms(100),
            probe_flow(ProbeKind::Syn, (client, sport), (server, 8080)),
        );
        d.on_input(ms(101), reply(client, server, 6, 8080));
        d.on_input(ms(101), established(client, server, 8080));
        d.on_input(ms(200), closed((client, sport), (server, 8080)));
    }
    assert_eq!(
        d.tracked_records(),
        0,
        "completed connections are forgotten at once"
    );
    assert!(ticks(&d, 0, 200_000).is_empty());
}

#[test]
fn retries_and_a_thousand_refused_connections_to_one_port_are_one_record() {
    let d = medium();
    let mut alerts = Vec::new();
    for i in 0..1000u64 {
        let (src, dst) = ((ip(SCANNER), 30000 + i as u16), (ip(TARGET), 5432));
        alerts.extend(d.on_input(ms(i), probe_flow(ProbeKind::Syn, src, dst)));
        alerts.extend(d.on_input(ms(i), rst(5432)));
    }
    alerts.extend(ticks(&d, 0, 10_000));
    assert!(alerts.is_empty());
    assert_eq!(d.tracked_records(), 1);
}

#[test]
fn tombstones_hide_late_segments_of_closed_connections() {
    let d = medium();
    let (client, server) = (ip(SCANNER), ip(TARGET));
    for p in 8000..8010u16 {
        d.on_input(ms(0), closed((client, 40000), (server, p)));
    }
    let late = |kind, p, t| d.on_input(ms(t), probe_flow(kind, (client, 40000), (server, p)));
    let mut alerts = Vec::new();
    for p in 8000..8010u16 {
        alerts.extend(late(ProbeKind::Maimon, p, 1_000));
        alerts.extend(late(ProbeKind::Ack, p, 1_000));
    }
    assert!(alerts.is_empty());
    // Expired tombstones no longer hide them.
    d.on_timer(ms(121_000));
    let alerts: Vec<_> = (8000..8010u16)
        .flat_map(|p| late(ProbeKind::Maimon, p, 121_000))
        .collect();
    assert_eq!(alerts.len(), 1);
}

#[test]
fn tombstones_are_bounded() {
    let d = det(ScanConfig {
        max_tombstones: 10,
        ..Default::default()
    });
    for p in 0..100u16 {
        d.on_input(ms(0), closed((ip(SCANNER), 40000), (ip(TARGET), 2000 + p)));
    }
    let t = lock(&d.tombstones);
    assert_eq!(t.expiry.len(), 10);
    assert!(t.contains(
        &Tuple::new(6, (ip(TARGET), 2099), (ip(SCANNER), 40000)),
        ms(1)
    ));
}

#[test]
fn late_replies_are_known_by_their_connection_not_their_source_port() {
    // A server's late ACKs to the client ports of connections that ended are hidden by the
    // tombstones those connections left (expiry leaves them too).
    let d = medium();
    let (client, server) = (ip(SCANNER), ip(TARGET));
    for p in 40000..40050u16 {
        d.on_input(ms(0), closed((client, p), (server, 443)));
    }
    let alerts: Vec<_> = (40000..40050u16)
        .flat_map(|p| {
            let ack = probe_flow(ProbeKind::Ack, (server, 443), (client, p));
            d.on_input(ms(1_000), ack)
        })
        .collect();
    assert!(alerts.is_empty(), "{alerts:?}");
    // `nmap -sA -g 80` (or -sF, -sM): probes from a service port to the high ports are seen.
    for kind in [ProbeKind::Ack, ProbeKind::Fin, ProbeKind::Maimon] {
        let d = medium();
        let alerts: Vec<_> = (1024..1100u16)
            .flat_map(|p| d.on_input(ms(0), probe_flow(kind, (client, 80), (server, p))))
            .collect();
        assert!(!alerts.is_empty(), "{kind:?} from port 80 went unseen");
    }
}

#[test]
fn allowlists() {
    let cfg = ScanConfig {
        allow_sources: vec!["198.51.100.0/24".parse().unwrap()],
        ..Default::default()
    };
    assert!(scan(&det(cfg), ProbeKind::Fin, 1..=100, 0).is_empty());
    let cfg = ScanConfig {
        allow_targets: vec!["203.0.113.0/30".parse().unwrap()],
        ..Default::default()
    };
    assert!(scan(&det(cfg), ProbeKind::Fin, 1..=100, 0).is_empty());
    let cfg = ScanConfig {
        allow_ports: vec![
            PortRange::new(1, 50).expect("ordered"),
            PortRange::single(99),
        ],
        ..Default::default()
    };
    let d = det(cfg);
    assert!(scan(
        &d,
        ProbeKind::Fin,
        (1..=50).chain([99, 100, 101, 102, 103]),
        0
    )
    .is_empty());
    assert_eq!(scan(&d, ProbeKind::Fin, [104], 10).len(), 1);
}

#[test]
fn a_busy_client_is_never_blocked() {
    // Blocking on, lowest level: 200 hosts on 443 and 1000 connections to one port, all
    // completed within the window. Many hosts on one port is no proof of a scan.
    let d = det(ScanConfig {
        block: true,
        block_level: 1,
        ..Default::default()
    });
    let client = ip("10.0.0.5");
    let mut alerts = Vec::new();
    for i in 0..200u16 {
        let server = IpAddr::from([192, 0, 2, (i % 250) as u8]);
        let server = if i < 250 { server } else { ip(TARGET) };
        let syn = probe_flow(ProbeKind::Syn, (client, 40000 + i), (server, 443));
        alerts.extend(d.on_input(ms(u64::from(i)), syn));
        alerts.extend(d.on_input(ms(u64::from(i) + 30), reply(client, server, 6, 443)));
        alerts.extend(d.on_input(ms(u64::from(i) + 31), established(client, server, 443)));
    }
    for sport in 0..1000u16 {
        let syn = probe_flow(ProbeKind::Syn, (client, 20000 + sport), (ip(TARGET), 8443));
        alerts.extend(d.on_input(ms(500), syn));
        alerts.extend(d.on_input(ms(530), reply(client, ip(TARGET), 6, 8443)));
        alerts.extend(d.on_input(ms(531), established(client, ip(TARGET), 8443)));
    }
    alerts.extend(d.on_timer(ms(10_000)));
    assert!(alerts.is_empty(), "{alerts:?}");
}
