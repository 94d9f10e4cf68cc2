//! Levels, windows and the action alerts announce (presets, overrides, blocking).

use super::*;

#[test]
fn escalation_levels_once_each() {
    let d = medium();
    let alerts = scan(&d, ProbeKind::Xmas, 1..=200, 0);
    let levels: Vec<(u8, usize)> = alerts.iter().map(|a| (a.level, a.nports)).collect();
    assert_eq!(levels, [(1, 5), (2, 15), (3, 50), (4, 150)]);
}

#[test]
fn one_alert_per_window_then_again() {
    let d = medium();
    assert_eq!(scan(&d, ProbeKind::Null, 1..=14, 0).len(), 1);
    assert!(ticks(&d, 0, 90_000).is_empty());
    // Past the window, old records and the mark are gone: a new scan alerts again.
    assert!(ticks(&d, 90_250, 91_000).is_empty());
    assert_eq!(d.tracked_records(), 0);
    assert_eq!(d.tracked_sources(), 0);
    assert_eq!(scan(&d, ProbeKind::Null, 100..105, 92_000).len(), 1);
}

#[test]
fn window_slides() {
    let d = medium();
    assert!(scan(&d, ProbeKind::Fin, 1..=4, 0).is_empty());
    assert_eq!(
        scan(&d, ProbeKind::Fin, 5..=6, 60_000).len(),
        1,
        "6 within 90 s"
    );
    let d = medium();
    assert!(scan(&d, ProbeKind::Fin, 1..=4, 0).is_empty());
    d.on_timer(ms(95_000));
    assert!(
        scan(&d, ProbeKind::Fin, 5..=8, 95_000).is_empty(),
        "the first 4 slid out"
    );
    assert_eq!(scan(&d, ProbeKind::Fin, 9..=9, 96_000).len(), 1);
}

#[test]
fn block_action_from_block_level() {
    let cfg = ScanConfig {
        block: true,
        block_level: 2,
        block_scope: BlockScope::Group,
        ..Default::default()
    };
    let d = det(cfg.clone());
    // Forgeable evidence never blocks, whatever its level.
    let alerts = scan(&d, ProbeKind::Fin, 1..=60, 0);
    assert_eq!(alerts.len(), 3);
    assert!(alerts
        .iter()
        .all(|a| (a.action, a.block) == (AlertAction::Rst, None)));
    // Completed handshakes to as many ports as a level-2 alert needs (3 × 15) do.
    let (client, server) = (ip(SCANNER), ip(TARGET));
    let mut alerts = Vec::new();
    for port in 1..=45u16 {
        let syn = probe_flow(ProbeKind::Syn, (client, 40000 + port), (server, port));
        alerts.extend(d.on_input(ms(100), syn));
        alerts.extend(d.on_input(ms(101), reply(client, server, 6, port)));
        alerts.extend(d.on_input(ms(102), established(client, server, port)));
        if port < 45 {
            assert!(
                alerts.iter().all(|a| a.block.is_none()),
                "{port}: {alerts:?}"
            );
        }
    }
    let alerts: Vec<_> = alerts.into_iter().filter(|a| a.block.is_some()).collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!((alerts[0].level, alerts[0].action), (2, AlertAction::Block));
    assert_eq!(alerts[0].block, Some("198.51.100.0/24".parse().unwrap()));
    let list = cfg.blocklist().unwrap();
    let a = &alerts[0];
    let net = a.block.unwrap();
    assert!(list
        .block(a.scanner, net, a.scan_type.name(), ms(0))
        .is_some());
    assert!(list.is_blocked(ip("198.51.100.77"), ms(1)));
    let d = ScanDetector::new(ScanConfig::default(), ProbeMode::Drop);
    assert_eq!(
        scan(&d, ProbeKind::Fin, 1..=5, 0)[0].action,
        AlertAction::Drop
    );
}

#[test]
fn overrides_and_presets() {
    let d = det(ScanConfig {
        stealth: Some(2),
        ..Default::default()
    });
    assert_eq!(scan(&d, ProbeKind::Fin, 1..=2, 0).len(), 1);
    let d = det(ScanConfig {
        sensitivity: Sensitivity::Low,
        ..Default::default()
    });
    assert!(scan(&d, ProbeKind::Fin, 1..=9, 0).is_empty());
    assert_eq!(scan(&d, ProbeKind::Fin, 10..=10, 10).len(), 1);
    let high = ScanConfig {
        sensitivity: Sensitivity::High,
        ..Default::default()
    };
    assert_eq!(high.thresholds().window, Duration::from_secs(600));
    assert_eq!(scan(&det(high), ProbeKind::Fin, 1..=3, 0).len(), 1);
    let off = det(ScanConfig {
        enabled: false,
        ..Default::default()
    });
    assert!(scan(&off, ProbeKind::Fin, 1..=100, 0).is_empty());
    assert_eq!(off.describe(), "scan detection: off");
}
