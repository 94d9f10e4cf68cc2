//! The daemon's side of the kernel fast path ([`crate::io::offload`]): the checks at start,
//! and the thread that passes over the kernel's fast-path flows — every `[offload] refresh`
//! seconds, and at once when the engine says flows left the fast path (a block, a recheck).

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::engine::{Engine, EngineConfig};
use crate::io::offload::OffloadSync;
use crate::time::Timestamp;

/// How often the thread looks whether the engine asks for a pass at once.
const POLL: Duration = Duration::from_millis(50);

/// The sysctls the kernel fast path relies on, with the value it needs and why.
const SYSCTLS: [(&str, &str, &str); 2] = [
    (
        "/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal",
        "0",
        "the kernel does not check the TCP windows of the flows it carries on the fast path",
    ),
    (
        "/proc/sys/net/netfilter/nf_conntrack_tcp_loose",
        "0",
        "the kernel picks up mid-stream TCP segments as new ESTABLISHED connections",
    ),
];

/// Warns about each sysctl that is not what the fast path relies on (the package's sysctl.d
/// file sets them at boot; the hardened unit cannot write them).
pub fn check_sysctls() {
    for (path, want, why) in SYSCTLS {
        match std::fs::read_to_string(path) {
            Ok(v) if v.trim() == want => {}
            Ok(v) => tracing::warn!(
                sysctl = path.trim_start_matches("/proc/sys/").replace('/', "."),
                value = v.trim(),
                want,
                "{why}: set it to {want} (sysctl.d/50-statewall.conf), or turn the fast path \
                 off ([offload] enable = false)"
            ),
            Err(e) => tracing::warn!(sysctl = path, error = %e, "cannot read"),
        }
    }
}

/// Opens the ctnetlink side of the fast path when `settings` want it, and gives the engine
/// configuration that goes with it: without ctnetlink statewall could neither keep offloaded
/// flows alive nor hand them back, so the fast path stays off.
pub fn open(settings: &Settings) -> (Option<OffloadSync>, EngineConfig) {
    let mut config = settings.engine();
    if !config.offload.enable {
        return (None, config);
    }
    check_sysctls();
    match OffloadSync::open(settings.netfilter.marks()) {
        Ok(sync) => (Some(sync), config),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "kernel conntrack table unavailable (nf_conntrack_netlink): fast path off"
            );
            config.offload.enable = false;
            (None, config)
        }
    }
}

/// Starts the pass thread.
pub fn spawn(
    mut sync: OffloadSync,
    engine: Arc<Engine>,
    start: Instant,
    every: Duration,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("offload".into())
        .spawn(move || {
            let mut last = Instant::now();
            let mut failing = false;
            loop {
                thread::sleep(POLL);
                let asked = engine.take_offload_release();
                if !asked && last.elapsed() < every {
                    continue;
                }
                last = Instant::now();
                let now = Timestamp::from_duration(start.elapsed());
                match sync.pass(|flow| engine.keep_offloaded(flow, now)) {
                    Ok(report) => {
                        failing = false;
                        if report.released > 0 || asked {
                            tracing::debug!(%report, "fast-path pass");
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "fast-path pass failed; retrying");
                        }
                        failing = true;
                    }
                }
            }
        })
}
