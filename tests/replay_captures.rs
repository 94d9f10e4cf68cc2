//! Replays the recorded and crafted captures of tests/captures through `statewall replay`:
//! real traffic (recorded through plain kernel forwarding) is never dropped, and crafted
//! captures are dropped exactly where tests/captures/expected.json says, with its reasons.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn captures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures")
}

/// Runs `statewall replay --json`, returns (drops by 1-based index, last stdout line).
fn replay(name: &str) -> (BTreeMap<u64, String>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_statewall"))
        .args(["replay", "--json"])
        .arg(captures().join(name))
        .output()
        .expect("run statewall");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf8");
    let mut drops = BTreeMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let (Some(i), Some(r)) = (v["index"].as_u64(), v["reason"].as_str()) {
            drops.insert(i, r.to_string());
        }
    }
    let last = text.lines().last().unwrap_or_default().to_string();
    (drops, last)
}

#[test]
fn recorded_real_traffic_is_never_dropped() {
    let real = [
        ("http-v4.pcap", 204),
        ("http-v6.pcap", 198),
        ("iperf3-v4.pcap", 258),
        ("iperf3-udp-v4.pcap", 273),
        ("ping-v4v6.pcap", 16),
        ("halfclose-v4.pcap", 28),
        ("keepalive-v4.pcap", 16),
    ];
    for (name, packets) in real {
        let (drops, last) = replay(name);
        assert!(drops.is_empty(), "{name}: {drops:?}");
        assert_eq!(
            last,
            format!("packets={packets} accepted={packets} dropped=0 skipped=0 held=0"),
            "{name}"
        );
    }
}

#[test]
fn crafted_captures_drop_exactly_the_expected_packets() {
    let text = std::fs::read_to_string(captures().join("expected.json")).expect("expected.json");
    let expected: serde_json::Value = serde_json::from_str(&text).expect("json");
    let files = expected.as_object().expect("object");
    assert!(files.len() >= 5);
    for (name, spec) in files {
        let want: BTreeMap<u64, String> = spec["drops"]
            .as_object()
            .expect("drops")
            .iter()
            .map(|(i, r)| {
                (
                    i.parse().expect("index"),
                    r.as_str().expect("reason").to_string(),
                )
            })
            .collect();
        let (got, last) = replay(name);
        assert_eq!(got, want, "{name}");
        let total = spec["total"].as_u64().expect("total");
        let held = spec["held"].as_u64().expect("held");
        let dropped = want.len() as u64;
        assert_eq!(
            last,
            format!(
                "packets={total} accepted={} dropped={dropped} skipped=0 held={held}",
                total - dropped - held
            ),
            "{name}"
        );
    }
}
