//! Differential test (root): every capture of tests/captures is replayed through a kernel
//! conntrack gateway in network namespaces (scripts/kernel-invalid, tcp_loose=0,
//! be_liberal=0, INVALID counted) and through `statewall replay`. statewall never drops a
//! packet the kernel accepts, except the documented stricter cases (data after a FIN, after a
//! RST or after a full close, RSTs outside the window). The table is printed side by side.
#![cfg(feature = "e2e")]

// Not every helper of the shared harness is used here.
#[allow(dead_code)]
mod e2e;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use e2e::{require, root};

/// Drops statewall makes on purpose where Linux conntrack passes the packet (docs/engine.md).
const STRICTER: &[&str] = &[
    "data_after_fin",
    "data_after_close",
    "data_after_rst",
    "rst_out_of_window",
];

/// statewall's drops: (1-based index, reason).
fn statewall_drops(pcap: &Path) -> Vec<(u64, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_statewall"))
        .args(["replay", "--json"])
        .arg(pcap)
        .output()
        .expect("run statewall replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["index"].as_u64()?, v["reason"].as_str()?.to_string())))
        .collect()
}

/// The kernel's INVALID packets: per packet for small captures, else only the count.
fn kernel_invalid(pcap: &Path, per_packet: bool) -> (u64, Option<BTreeSet<u64>>) {
    require(&[]);
    let mut cmd = Command::new(root().join("scripts/kernel-invalid"));
    if per_packet {
        cmd.arg("--per-packet");
    }
    let out = cmd.arg(pcap).output().expect("run scripts/kernel-invalid");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "kernel-invalid failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = text.lines().last().unwrap_or_default();
    let count = last
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("kernel_invalid="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no kernel_invalid= in {last:?}"));
    let set = text
        .lines()
        .find_map(|l| l.strip_prefix("invalid_packets="))
        .map(|list| {
            list.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect::<BTreeSet<u64>>()
        });
    (count, set)
}

#[test]
fn statewall_never_drops_more_than_the_kernel_but_the_stricter_cases() {
    let dir = root().join("tests/captures");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("captures")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".pcap"))
        .collect();
    names.sort();
    assert!(names.len() >= 10, "{names:?}");
    println!(
        "{:<22} {:>8} {:>8} {:>10}  extra statewall drops",
        "capture", "bytes", "kernel", "statewall"
    );
    let mut failures = Vec::new();
    for name in &names {
        let pcap = dir.join(name);
        let crafted = name.starts_with("crafted-");
        let drops = statewall_drops(&pcap);
        let (kernel, kernel_set) = kernel_invalid(&pcap, crafted);
        let extra: Vec<&(u64, String)> = match &kernel_set {
            Some(set) => drops.iter().filter(|(i, _)| !set.contains(i)).collect(),
            None => Vec::new(),
        };
        let bytes = std::fs::metadata(&pcap).map(|m| m.len()).unwrap_or(0);
        println!(
            "{name:<22} {bytes:>8} {kernel:>8} {:>10}  {}",
            drops.len(),
            extra
                .iter()
                .map(|(i, r)| format!("#{i} {r}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (i, reason) in &extra {
            if !STRICTER.contains(&reason.as_str()) {
                failures.push(format!("{name} #{i}: statewall {reason}, kernel accepts"));
            }
        }
        if kernel_set.is_none() && drops.len() as u64 > kernel {
            failures.push(format!(
                "{name}: statewall drops {} > kernel INVALID {kernel}",
                drops.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
