//! The shipped systemd unit and its companion files, checked with systemd's own tools
//! (`systemd-analyze verify` and `security --offline`; PID 1 need not be systemd).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn unit_text() -> String {
    std::fs::read_to_string(root().join("systemd/statewall.service")).expect("read the unit")
}

/// A copy of the unit whose commands point to the binary this test was built with (the
/// packaged path, /usr/sbin/statewall, need not exist here; the package test verifies it).
fn unit_copy(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("temp dir");
    let text = unit_text().replace("/usr/sbin/statewall", env!("CARGO_BIN_EXE_statewall"));
    let path = dir.join("statewall.service");
    std::fs::write(&path, text).expect("write unit copy");
    path
}

fn temp_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("statewall-unit-{name}-{}", std::process::id()))
}

#[test]
fn systemd_analyze_verify_is_clean() {
    let dir = temp_dir("verify");
    let unit = unit_copy(&dir);
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze is missing: run scripts/setup");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify failed: {stderr}");
    assert!(stderr.trim().is_empty(), "verify complained: {stderr}");
}

#[test]
fn security_exposure_is_at_most_2() {
    let dir = temp_dir("security");
    let unit = unit_copy(&dir);
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze is missing: run scripts/setup");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure line in:\n{text}"));
    let exposure: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure in `{line}`"));
    eprintln!("{line}");
    assert!(exposure <= 2.0, "exposure {exposure} > 2.0:\n{text}");
}

#[test]
fn the_unit_runs_as_statewall_before_the_network_with_two_capabilities() {
    let text = unit_text();
    let has = |line: &str| text.lines().any(|l| l.trim() == line);
    for line in [
        "User=statewall",
        "Group=statewall",
        "Before=network-pre.target",
        "Wants=network-pre.target",
        "Type=notify",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW",
        "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW",
        "ExecReload=/usr/sbin/statewall reload --config /etc/statewall/statewall.toml",
        "ProtectKernelModules=yes",
        "SystemCallFilter=~@privileged @resources",
    ] {
        assert!(has(line), "`{line}` missing from the unit");
    }
    assert!(!text.contains("After=network-pre.target"));
}

#[test]
fn companion_files_name_the_user_modules_and_sysctls() {
    let read = |f: &str| std::fs::read_to_string(root().join("systemd").join(f)).expect(f);
    let entries = |text: String| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect()
    };
    let users = entries(read("statewall.sysusers"));
    assert_eq!(users.len(), 1);
    assert!(users[0].starts_with("u statewall "), "{users:?}");
    let modules = entries(read("statewall-modules.conf"));
    for m in [
        "nfnetlink_queue",
        "xt_NFQUEUE",
        "nf_conntrack_netlink",
        "xt_connmark",
    ] {
        assert!(modules.iter().any(|l| l == m), "module {m} missing");
    }
    let sysctls = entries(read("statewall-sysctl.conf"));
    for s in [
        "net.netfilter.nf_conntrack_tcp_be_liberal = 0",
        "net.netfilter.nf_conntrack_tcp_loose = 0",
    ] {
        assert!(sysctls.iter().any(|l| l == s), "sysctl {s} missing");
    }
    let tmpfiles = entries(read("statewall.tmpfiles"));
    assert!(tmpfiles
        .iter()
        .any(|l| l == "d /run/statewall 0750 statewall statewall -"));
}
