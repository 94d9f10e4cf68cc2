//! The statewall side of the HA lab's tests (tests/e2e_ha.rs): its counters, role and tracked
//! connections over the control socket, flows entered by hand into a gateway's kernel table
//! (which conntrackd replicates like any other), and rounds of out-of-state probes
//! (`probes.py lone`) with captures on both ends.

use std::collections::{BTreeMap, BTreeSet};

use super::ha::HaLab;
use super::{script, SRV_V4};

/// The port the probes of no connection go to (nothing listens; not a port the RST counts of
/// the failovers look at).
pub const PROBE_PORT: u16 = 7009;
/// A port the lab's rules refuse (scripts/lib/lab_ha.sh).
pub const REFUSED_PORT: u16 = 7002;

/// `statewall ARGS --json` on gateway `g`, parsed.
pub fn statewall_json(lab: &HaLab, g: &str, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let text = lab.statewall(g, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("statewall {args:?}: {e}: {text}"))
}

/// The drop counters of gateway `g`'s statewall, by reason.
pub fn drops(lab: &HaLab, g: &str) -> BTreeMap<String, u64> {
    let v = statewall_json(lab, g, &["stats"]);
    v["drops"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// `after - before` for every reason that moved.
pub fn delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// A flow entered by hand into a gateway's kernel table (`conntrack -I`), which conntrackd
/// replicates like any other: an established TCP connection from the client to the server.
pub struct Injected {
    /// Name used in probe reports.
    pub name: &'static str,
    /// Client port.
    pub sport: u16,
    /// Server port.
    pub dport: u16,
    /// Its connection mark.
    pub mark: u32,
}

impl Injected {
    /// A data segment of the flow for `probes.py lone` (`NAME:SPORT:DPORT:SEQ:ACK`).
    pub fn segment(&self, round: u32) -> String {
        format!(
            "{}:{}:{}:{}:{}",
            self.name,
            self.sport,
            self.dport,
            1_000_000 + round * 1000,
            2_000_000
        )
    }
}

impl HaLab {
    /// Enters `flow` into gateway `g`'s kernel table.
    pub fn inject(&self, g: &str, flow: &Injected) {
        self.ok(
            &format!("gw{g}"),
            10,
            &format!(
                "conntrack -I -p tcp -s {CLI} -d {SRV_V4} --sport {} --dport {} --state ESTABLISHED \
                 -u SEEN_REPLY,ASSURED -t 600 --mark {:#x}",
                flow.sport,
                flow.dport,
                flow.mark,
                CLI = super::CLI_V4
            ),
        );
    }

    /// Whether gateway `g`'s kernel table holds a TCP flow with client port `sport`.
    pub fn kernel_has(&self, g: &str, sport: u16) -> bool {
        let out = self.sh(
            &format!("gw{g}"),
            10,
            &format!("conntrack -L -p tcp --sport {sport} 2>/dev/null"),
        );
        String::from_utf8_lossy(&out.stdout).contains(&format!("sport={sport} "))
    }

    /// How many connections gateway `g`'s statewall tracks with port `port` on either side.
    pub fn tracked(&self, g: &str, port: u16) -> usize {
        let v = statewall_json(self, g, &["conns", "--port", &port.to_string()]);
        v.as_array().map_or(0, Vec::len)
    }

    /// The role of gateway `g`'s statewall (`standby`, `taking over (N s left)`, `active`).
    pub fn role(&self, g: &str) -> String {
        statewall_json(self, g, &["status"])["role"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// What one round of probes did.
#[derive(Clone, Debug)]
pub struct ProbeRound {
    /// Packets of each probe that reached the server.
    pub seen: BTreeMap<String, u64>,
    /// The probes the client received a RST for (from the probe port).
    pub answered: BTreeSet<String>,
}

impl ProbeRound {
    /// How many of the probes reached the server.
    pub fn leaked(&self) -> u64 {
        self.seen.values().sum()
    }
}

/// Sends the probes of no connection (to [`PROBE_PORT`], source ports from `base`) and one
/// data segment of each injected flow from the client, with captures on both ends.
pub fn probe_round(
    lab: &mut HaLab,
    tag: &str,
    base: u16,
    flows: &[&Injected],
    round: u32,
) -> ProbeRound {
    let mut ports: Vec<String> = vec![PROBE_PORT.to_string()];
    ports.extend(flows.iter().map(|f| f.sport.to_string()));
    let srv = lab.capture(
        "srv",
        &format!("probes-{tag}-srv"),
        &format!("tcp and (port {})", ports.join(" or port ")),
    );
    let cli = lab.capture(
        "cli",
        &format!("probes-{tag}-cli"),
        &format!("tcp src port {PROBE_PORT} and (tcp[tcpflags] & tcp-rst) != 0"),
    );
    let expect = lab.tmp.join(format!("probes-{tag}.json"));
    let segments: Vec<String> = flows.iter().map(|f| f.segment(round)).collect();
    lab.ok(
        "cli",
        60,
        &format!(
            "/usr/bin/python3 {} lone {SRV_V4} {PROBE_PORT} {base} {} {}",
            script("probes.py"),
            expect.display(),
            segments.join(" ")
        ),
    );
    let answers = cli.stop();
    let _ = srv.stop();
    let probes: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&expect).expect("probes file"))
            .expect("probes JSON");
    // `... ethertype IPv4 (0x0800), length 54: 203.0.113.2.7009 > 198.51.100.2.41001: Flags [R.],
    // ...` (link-layer addresses first, `a > b` too): the answered probe's port.
    let answered = answers
        .iter()
        .filter_map(|l| {
            let to = l.rsplit(" > ").next()?.split(':').next()?;
            to.rsplit('.').next()?.parse::<u64>().ok()
        })
        .filter_map(|port| {
            probes.as_array()?.iter().find_map(|p| {
                (p["sport"].as_u64() == Some(port))
                    .then(|| p["name"].as_str().map(str::to_string))?
            })
        })
        .collect();
    let pcap = lab.tmp.join(format!("probes-{tag}-srv.pcap"));
    let seen = super::probes::check(&pcap, &expect, |cmd| lab.ok("cli", 60, cmd))
        .into_iter()
        .map(|p| (p.name, p.seen))
        .collect();
    ProbeRound { seen, answered }
}
