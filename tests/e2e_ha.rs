//! End-to-end tests of a statewall pair (docs/ha.md): two gateway namespaces on a client and a
//! server segment (bridges), keepalived (VRRP) moving the gateway addresses, conntrackd (FTFW,
//! `DisableExternalCache On`) replicating the kernel conntrack table over a sync link —
//! `scripts/lab ha`, configured from contrib/keepalived and contrib/conntrackd.
//!
//! Every failover runs a rate-limited 100 MB download, 200 idle TCP connections and a UDP
//! request/response stream (one request per 10 ms) and reports: trigger → new master, new
//! master → first packet it forwarded, the UDP outage and losses, RSTs seen by client and
//! server. Linux alone (kernel conntrack, loose=0, INVALID dropped) runs the same scenarios in
//! the same lab as the reference.
//!
//! Run as root: `cargo test --release --features e2e --test e2e_ha -- --test-threads=1`.
#![cfg(feature = "e2e")]

#[allow(dead_code)]
mod e2e;

use e2e::ha::{switch, Firewall, HaLab, IdleSet, Switch, Workload};

/// Fails the master by stopping its keepalived, fails back; then by taking its links down,
/// fails back. Returns the four switches.
fn failover_suite(lab: &mut HaLab, w: &mut Workload, name: &str) -> Vec<Switch> {
    let mut rows = Vec::new();
    rows.push(switch(
        lab,
        w,
        &format!("{name}: keepalived of a stopped"),
        ("a", "b"),
        4,
        |l| {
            l.lab(&["stop", "a", "keepalived"]);
        },
    ));
    rows.push(switch(
        lab,
        w,
        &format!("{name}: failback, keepalived a back"),
        ("b", "a"),
        12,
        |l| {
            l.lab(&["start", "a", "keepalived"]);
        },
    ));
    rows.push(switch(
        lab,
        w,
        &format!("{name}: links of a down"),
        ("a", "b"),
        6,
        |l| {
            l.lab(&["links", "a", "down"]);
        },
    ));
    rows.push(switch(
        lab,
        w,
        &format!("{name}: failback, links of a up"),
        ("b", "a"),
        12,
        |l| {
            l.lab(&["links", "a", "up"]);
        },
    ));
    rows
}

fn print_table(rows: &[Switch]) {
    eprintln!("{}", Switch::header());
    for r in rows {
        eprintln!("{}", r.row());
    }
}

/// Every failback must have waited for the returning gateway's bulk resync: its log shows the
/// resync done before its MASTER notification.
fn assert_resync_before_master(lab: &HaLab) {
    let log = lab.ha_log("a");
    let mut synced = false;
    let mut masters = 0;
    for line in log.lines() {
        if line.contains("resync: done") {
            synced = true;
        }
        if line.contains("notify INSTANCE STATEWALL MASTER") {
            assert!(synced, "gateway a became master before its resync:\n{log}");
            masters += 1;
        }
        if line.contains("notify INSTANCE STATEWALL BACKUP")
            || line.contains("notify INSTANCE STATEWALL FAULT")
        {
            synced = false;
        }
    }
    assert!(masters >= 3, "gateway a was master {masters} times:\n{log}");
}

#[test]
fn linux_alone_reference_keeps_every_connection() {
    let mut lab = HaLab::up(Firewall::Linux, "");
    let mut w = Workload::start(&mut lab);
    let rows = failover_suite(&mut lab, &mut w, "linux");
    print_table(&rows);
    for r in &rows {
        r.assert_clean();
    }
    assert_resync_before_master(&lab);

    // Control: without replication the new master does not know the flows. Connections opened
    // after conntrackd stopped are cut by a failover (the kernel drops their segments as
    // INVALID: the client times out), the replicated ones survive.
    lab.lab(&["stop", "a", "conntrackd"]);
    lab.lab(&["stop", "b", "conntrackd"]);
    let mut fresh = IdleSet::open(&mut lab, "fresh", 20);
    lab.lab(&["stop", "a", "keepalived"]);
    lab.wait_master("b", 20);
    let old = w.idle.check();
    let new = fresh.check();
    eprintln!("linux without conntrackd: replicated {old:?}, not replicated {new:?}");
    assert_eq!(old.alive, w.idle.n as u64, "{old:?}");
    assert_eq!(new.alive, 0, "{new:?}");
}
