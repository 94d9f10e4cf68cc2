//! Floods and the legitimate traffic measured through them (`tests/e2e/flood.py`), and the two
//! firewalls they are measured on: statewall and Linux conntrack's own ruleset.

use std::path::{Path, PathBuf};

use super::lab::Lab;
use super::{script, wait_for};

/// The spoofed sources' range (RFC 2544 benchmarking).
pub const SPOOFED: &str = "198.18.0.0/15";

/// Routes the spoofed range from the gateway back to the client's segment: what servers
/// answer to spoofed sources crosses the gateway, as on a real network, and ends at the
/// client, whose kernel drops it (it does not hold those addresses).
pub fn route_spoofed_range(lab: &Lab) {
    lab.ok(
        "gw",
        10,
        &format!("ip route replace {SPOOFED} via 198.51.100.2 dev g0"),
    );
}

/// The kernel's own stateful ruleset in the gateway (what `tests/e2e_gateway.rs` compares
/// against): INVALID dropped, ESTABLISHED/RELATED accepted, then the rule fragments `v4` and
/// `v6` for what is left (NEW packets; empty: every new connection allowed), the conntrack
/// table flushed first.
pub fn kernel_ruleset(lab: &Lab, v4: &[&str], v6: &[&str]) {
    let mut cmd = String::from(
        "conntrack -F >/dev/null 2>&1; conntrack -F -f ipv6 >/dev/null 2>&1; \
         for t in iptables ip6tables; do \
         $t -F FORWARD && \
         $t -A FORWARD -m conntrack --ctstate INVALID -j DROP && \
         $t -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT || exit 1; done; ",
    );
    for (t, rules) in [("iptables", v4), ("ip6tables", v6)] {
        for rule in rules {
            cmd.push_str(&format!("{t} -A FORWARD {rule} || exit 1; "));
        }
    }
    lab.ok("gw", 10, &cmd);
}

/// Outcome of a round of connection attempts (`flood.py attempts`).
#[derive(Clone, Debug, Default)]
pub struct Attempts {
    /// Requests answered completely.
    pub ok: u64,
    /// Attempts made.
    pub n: u64,
    /// The failures by kind.
    pub errors: String,
}

impl std::fmt::Display for Attempts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ok, self.n)?;
        if self.ok < self.n {
            write!(f, " {}", self.errors)?;
        }
        Ok(())
    }
}

/// Starts `n` HTTP requests to `addr:8080` (apps.py httpd) from the client, one every
/// `interval_ms`, each given `timeout` seconds, optionally from the local address `bind`;
/// returns the file its result will be in ([`Attempts::read`]).
pub fn attempts_start(
    lab: &mut Lab,
    name: &str,
    addr: &str,
    n: u32,
    interval_ms: u32,
    timeout: u32,
    bind: Option<&str>,
) -> PathBuf {
    let out = lab.tmp.join(format!("attempts-{name}.json"));
    let _ = std::fs::remove_file(&out);
    lab.spawn(
        "cli",
        &format!(
            "exec python3 {} attempts {addr} 8080 {n} {} {timeout} {} {}",
            script("flood.py"),
            f64::from(interval_ms) / 1000.0,
            out.display(),
            bind.unwrap_or("")
        ),
    );
    out
}

impl Attempts {
    /// Waits for the result of [`attempts_start`].
    pub fn read(path: &Path) -> Attempts {
        assert!(
            wait_for(120, || path.exists()),
            "no result in {}",
            path.display()
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
        Attempts {
            ok: v["ok"].as_u64().unwrap_or(0),
            n: v["ok"].as_u64().unwrap_or(0) + v["failed"].as_u64().unwrap_or(0),
            errors: v["errors"].to_string(),
        }
    }
}

/// Runs `flood.py ARGS` in the client (bounded by `secs`); returns its summary line.
pub fn flood(lab: &Lab, secs: u32, args: &str) -> String {
    lab.ok(
        "cli",
        secs,
        &format!("python3 {} {args}", script("flood.py")),
    )
    .trim()
    .to_string()
}

/// `n` new connections to the server's port 8080, spread over a flood of `secs` seconds
/// (`flood.py ARGS`), each given 4 s (SYN retransmits at 1 s and 3 s): their result and the
/// flood's summary line.
pub fn attempts_during(
    lab: &mut Lab,
    name: &str,
    n: u32,
    secs: f64,
    args: &str,
) -> (Attempts, String) {
    let during = attempts_start(
        lab,
        name,
        super::SRV_V4,
        n,
        (secs * 1000.0 / f64::from(n)) as u32,
        4,
        None,
    );
    let summary = flood(lab, (secs as u32) + 60, args);
    (Attempts::read(&during), summary)
}

/// 40 new connections to the server's port 8080, 25 ms apart, each given 4 s (after a flood).
pub fn attempts_after(lab: &mut Lab, name: &str) -> Attempts {
    Attempts::read(&attempts_start(lab, name, super::SRV_V4, 40, 25, 4, None))
}
