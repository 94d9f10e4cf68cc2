//! Memory bounds and sharing: source and record caps, threads, and any input sequence.

use super::*;

#[test]
fn sources_are_capped_oldest_evicted() {
    let d = det(ScanConfig {
        max_sources: 8,
        ..Default::default()
    });
    for i in 0..100u8 {
        let src = IpAddr::from([10, 0, i, 1]);
        d.on_input(ms(u64::from(i)), probe_from(src, ProbeKind::Fin, TARGET, 1));
        assert!(d.tracked_sources() <= 8);
    }
    // The most recent sources are kept and still accumulate.
    let last = IpAddr::from([10, 0, 99, 1]);
    let alerts: Vec<_> = (2..=5)
        .flat_map(|p| d.on_input(ms(200), probe_from(last, ProbeKind::Fin, TARGET, p)))
        .collect();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].scanner, last);
}

#[test]
fn records_are_capped() {
    let d = det(ScanConfig {
        max_records: 100,
        ..Default::default()
    });
    for i in 0..50u8 {
        let src = IpAddr::from([10, 0, i, 1]);
        for p in 1..=10 {
            d.on_input(
                ms(u64::from(i)),
                probe_from(src, ProbeKind::Null, TARGET, p),
            );
        }
        assert!(d.tracked_records() <= 100);
    }
    // One source alone is capped at what level 4 needs.
    let d = medium();
    scan(&d, ProbeKind::Null, 1..=5000, 0);
    assert_eq!(d.tracked_records(), 15 * 30 + 32);
    // The cap is per technique: the same scanner switching technique is still seen.
    let alerts = scan(&d, ProbeKind::Fin, 1..=200, 6000);
    let levels: Vec<u8> = alerts
        .iter()
        .filter(|a| a.technique == Technique::Fin)
        .map(|a| a.level)
        .collect();
    assert_eq!(levels, [1, 2, 3, 4]);
}

#[test]
fn detector_is_shared_between_threads() {
    fn assert_sync<T: Send + Sync>() {}
    assert_sync::<ScanDetector>();
    let d = std::sync::Arc::new(det(ScanConfig {
        max_sources: 4096,
        ..Default::default()
    }));
    let handles: Vec<_> = (0..4u8)
        .map(|t| {
            let d = std::sync::Arc::clone(&d);
            std::thread::spawn(move || {
                let src = IpAddr::from([10, 1, t, 1]);
                (1..=15u16)
                    .flat_map(|p| d.on_input(ms(0), probe_from(src, ProbeKind::Fin, TARGET, p)))
                    .count()
            })
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 8, "levels 1 and 2 for each of 4 scanners");
}

proptest::proptest! {
    /// Any sequence of events and answers keeps the detector within its bounds and its
    /// tallies consistent with its records.
    #[test]
    fn any_event_stream_stays_bounded(
        steps in proptest::collection::vec(
            (0u8..12, 0u8..6, 0u8..4, 0u16..40, 0u8..6, 0u64..2_000), 1..400)
    ) {
        let d = det(ScanConfig { max_sources: 4, max_records: 64, ..Default::default() });
        let mut now = 0u64;
        for (kind, src, dst, port, action, dt) in steps {
            now += dt;
            let t = ms(now);
            let src = IpAddr::from([10, 0, 0, src]);
            let dst = IpAddr::from([203, 0, 113, dst]);
            let kind = ProbeKind::ALL[usize::from(kind)];
            let proto = if kind.technique() == Technique::Udp { 17 } else { 6 };
            let flow = flow_of(proto, (src, 40000), (dst, port));
            match action {
                0 | 1 => drop(d.on_input(t, probe_flow(kind, (src, 40000), (dst, port)))),
                2 => drop(d.on_input(t, answer(src, dst, proto, port, AnswerKind::TcpRst))),
                3 => drop(d.on_input(t, reply(src, dst, proto, port))),
                4 => drop(d.on_input(t, ScanInput::Established { flow })),
                _ => drop(d.on_timer(t)),
            }
            proptest::prop_assert!(d.tracked_sources() <= 4);
            proptest::prop_assert!(d.tracked_records() <= 64);
        }
        for shard in d.shards.iter() {
            let shard = lock(shard);
            let mut records = 0;
            for source in shard.sources.values() {
                records += source.records.len();
                let counted = source.records.values().filter(|r| matches!(r.state, RecState::Counted(_))).count();
                let by_dst: u32 = source.tallies.by_dst.values().flat_map(|t| t.0.iter().map(|(_, c)| c.n)).sum();
                let by_port: u32 = source.tallies.by_port.values().flat_map(|t| t.0.iter().map(|(_, c)| c.n)).sum();
                proptest::prop_assert_eq!(by_dst as usize, counted);
                proptest::prop_assert_eq!(by_port as usize, counted);
            }
            proptest::prop_assert_eq!(records, shard.records);
        }
    }
}
