//! Helpers for the end-to-end tests: a lab of three network namespaces (scripts/lab) per test,
//! the real `statewall run` binary in the gateway namespace, commands bounded by `timeout`,
//! and a guard that always tears everything down.
//!
//! - [`lab`]: the namespaces, commands in them, background processes, captures;
//! - [`daemon`]: `statewall run` in the gateway, its final counters, the control client;
//! - [`apps`]: the traffic endpoints of `tests/e2e/apps.py` (also used by `scripts/demo` and
//!   `scripts/record-captures`), starting with the HTTP server every suite uses, and the idle
//!   connections (`IdleSet`) the flood, HA and observability tests hold open;
//! - [`ha`]: the two-gateway HA lab (`scripts/lab ha`) and its failover workload;
//! - [`ha_probes`]: statewall's side of it (counters, role, injected flows, probe rounds);
//! - [`probes`]: what a capture saw of the crafted probes of `tests/e2e/probes.py`;
//! - [`flood`]: bounded floods from spoofed sources (`tests/e2e/flood.py`), the legitimate
//!   traffic measured through them, and Linux conntrack's ruleset to compare with.
//!
//! A missing tool or missing root privileges is a test failure, never a skip.
//!
//! Every e2e test crate compiles this module and uses a part of it, hence
//! `#[allow(dead_code)] mod e2e;` in each.

pub mod apps;
pub mod daemon;
pub mod flood;
pub mod ha;
pub mod ha_probes;
pub mod lab;
pub mod probes;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// The helpers most tests use, by their short names (a test crate may leave some unused).
#[allow(unused_imports)]
pub use apps::{http_server, url};
#[allow(unused_imports)]
pub use daemon::{cleanup, ctl, output_text, stats_json, FinalStats, Statewall};
#[allow(unused_imports)]
pub use lab::{signal, Capture, Lab};

/// The client's IPv4 address (the lab's addresses are those of scripts/lib/lab.sh).
pub const CLI_V4: &str = "198.51.100.2";
/// The client's IPv6 address.
pub const CLI_V6: &str = "2001:db8:1::2";
/// The server's IPv4 address.
pub const SRV_V4: &str = "203.0.113.2";
/// The server's IPv6 address.
pub const SRV_V6: &str = "2001:db8:2::2";

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A helper script of tests/e2e.
pub fn script(name: &str) -> String {
    root().join("tests/e2e").join(name).display().to_string()
}

/// Fails the test unless we are root and every tool is installed.
pub fn require(tools: &[&str]) {
    let uid = Command::new("id").arg("-u").output().expect("run id");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the e2e tests need root (network namespaces, iptables)"
    );
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .expect("run sh");
        assert!(found.success(), "{tool} is missing: run scripts/setup");
    }
}

/// Polls `cond` every 50 ms until it holds or `secs` pass; returns whether it held.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
