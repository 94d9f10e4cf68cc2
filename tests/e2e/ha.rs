//! The two-gateway HA lab (`scripts/lab ha`, scripts/lib/lab_ha.sh) for tests/e2e_ha.rs: a
//! lab per test with a unique prefix, the workload of the failover scenarios (an echo server
//! with 200 idle connections, a UDP request/response stream, a rate-limited 100 MB download),
//! RST captures on both ends, and the figures of one failover. Dropped → everything stopped,
//! namespaces and files removed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::apps::{IdleCheck, IdleSet};
use super::{require, root, script, signal, wait_for, SRV_V4};

/// The echo server's TCP port (idle connections).
pub const ECHO_PORT: u16 = 7000;
/// The echo server's UDP port (request/response stream).
pub const UDP_PORT: u16 = 7001;
/// The HTTP server's port (download).
pub const HTTP_PORT: u16 = 8080;
/// Idle connections held across every failover.
pub const IDLE: usize = 200;
/// How long a round over the idle connections may take to report (each waits 10 s at most).
pub const IDLE_CHECK_SECS: u64 = 40;
/// Size of the download, MiB.
pub const DOWNLOAD_MIB: u32 = 100;
/// statewall's `[ha] takeover_window` in the lab, seconds (the default is 10; the probes sent
/// "during the takeover" need a margin on a loaded machine).
pub const TAKEOVER_WINDOW: u64 = 20;

/// What filters the gateways.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firewall {
    /// statewall in both gateways.
    Statewall,
    /// Kernel conntrack alone (the reference).
    Linux,
}

impl Firewall {
    fn arg(self) -> &'static str {
        match self {
            Firewall::Statewall => "statewall",
            Firewall::Linux => "linux",
        }
    }
}

/// Wall-clock seconds (the namespaces share the clock, and so do the logs and captures).
pub fn wall() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// One HA lab.
pub struct HaLab {
    /// Namespace prefix.
    pub prefix: String,
    /// The lab's run directory (configs, pid files, daemon logs).
    pub dir: PathBuf,
    /// This test's own files.
    pub tmp: PathBuf,
    /// The firewall.
    pub firewall: Firewall,
    children: Vec<Child>,
}

impl HaLab {
    /// Builds the lab: both gateways running `firewall` (statewall with `extra` TOML appended
    /// to its configuration), keepalived and conntrackd; gateway a is master.
    pub fn up(firewall: Firewall, extra: &str) -> HaLab {
        HaLab::up_topology(firewall, extra, "vrrp")
    }

    /// Like [`HaLab::up`] in `topology` (`vrrp`, or `ecmp`: both gateways active behind
    /// router namespaces, no keepalived).
    pub fn up_topology(firewall: Firewall, extra: &str, topology: &str) -> HaLab {
        require(&[
            "ip",
            "iptables",
            "python3",
            "curl",
            "tcpdump",
            "timeout",
            "sha256sum",
            "keepalived",
            "conntrackd",
            "conntrack",
        ]);
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("ha{}{}-", std::process::id() % 100_000, n);
        let tmp = std::env::temp_dir().join(format!("statewall-e2e-{prefix}"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).expect("temp dir");
        let extra_file = tmp.join("statewall-extra.toml");
        std::fs::write(&extra_file, extra).expect("extra config");
        let dir = tmp.join("lab");
        let lab = HaLab {
            prefix,
            dir,
            tmp,
            firewall,
            children: Vec::new(),
        };
        let t0 = Instant::now();
        let out = lab
            .lab_cmd()
            .args(["up", &lab.prefix, firewall.arg(), topology])
            .env("LAB_HA_STATEWALL_EXTRA", &extra_file)
            .output()
            .expect("run scripts/lab ha up");
        assert!(
            out.status.success(),
            "lab ha up failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "lab ha up ({}, {topology}): {:?}",
            firewall.arg(),
            t0.elapsed()
        );
        lab
    }

    fn lab_cmd(&self) -> Command {
        let mut c = Command::new("timeout");
        c.args(["-k", "5", "120"])
            .arg(root().join("scripts/lab"))
            .arg("ha")
            .env("LAB_HA_DIR", &self.dir)
            .env("STATEWALL_BIN", env!("CARGO_BIN_EXE_statewall"))
            .env("LAB_HA_RESYNC_QUIET", "1")
            .env("LAB_HA_TAKEOVER_WINDOW", TAKEOVER_WINDOW.to_string());
        c
    }

    /// `scripts/lab ha ARGS...` for this lab; must succeed.
    pub fn lab(&self, args: &[&str]) -> String {
        let mut c = self.lab_cmd();
        let (verb, rest) = args.split_first().expect("a verb");
        c.arg(verb).arg(&self.prefix).args(rest);
        let out = c.output().expect("run scripts/lab ha");
        assert!(
            out.status.success(),
            "lab ha {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Which gateway holds the addresses: `a`, `b`, `none` or `both`.
    pub fn master(&self) -> String {
        self.lab(&["master"]).trim().to_string()
    }

    /// Waits (bounded) until `g` is the master; panics otherwise.
    pub fn wait_master(&self, g: &str, secs: u64) {
        assert!(
            wait_for(secs, || self.master() == g),
            "gateway {g} not master after {secs}s (master: {}); logs:\n{}",
            self.master(),
            self.ha_logs()
        );
    }

    /// Full namespace name of `cli`, `srv`, `gwa`, `gwb`, `lan` or `wan`.
    pub fn ns(&self, which: &str) -> String {
        format!("{}{which}", self.prefix)
    }

    /// Runs `sh -c SCRIPT` in namespace `which`, bounded by `secs`.
    pub fn sh(&self, which: &str, secs: u32, script: &str) -> Output {
        Command::new("timeout")
            .args(["-k", "2", &secs.to_string(), "ip", "netns", "exec"])
            .arg(self.ns(which))
            .args(["sh", "-c", script])
            .output()
            .expect("run timeout/ip")
    }

    /// Like [`HaLab::sh`], but the command must succeed; returns its stdout.
    pub fn ok(&self, which: &str, secs: u32, script: &str) -> String {
        let out = self.sh(which, secs, script);
        assert!(
            out.status.success(),
            "in {which}: `{script}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `n` idle connections from cli to the server's echo port (each exchanged a line first).
    pub fn idle_set(&mut self, name: &str, n: usize) -> IdleSet {
        let tmp = self.tmp.clone();
        IdleSet::open(&tmp, name, (SRV_V4, ECHO_PORT), n, 60, |cmd| {
            self.spawn("cli", cmd);
        })
    }

    /// Starts `sh -c SCRIPT` in the background in namespace `which` (killed at teardown).
    pub fn spawn(&mut self, which: &str, script: &str) -> u32 {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(which), "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// The statewall-ha log of gateway `g` (notifications, resyncs).
    pub fn ha_log(&self, g: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("ha-{g}.log"))).unwrap_or_default()
    }

    /// Both gateways' statewall-ha logs.
    pub fn ha_logs(&self) -> String {
        format!("--- gwa\n{}--- gwb\n{}", self.ha_log("a"), self.ha_log("b"))
    }

    /// Wall-clock times at which gateway `g` was notified of `state`.
    pub fn notified(&self, g: &str, state: &str) -> Vec<f64> {
        let needle = format!("notify INSTANCE STATEWALL {state} ");
        self.ha_log(g)
            .lines()
            .filter(|l| l.contains(&needle))
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    }

    /// The MAC address of a gateway's interface.
    pub fn mac(&self, g: &str, dev: &str) -> String {
        let out = self.ok(
            &format!("gw{g}"),
            5,
            &format!("cat /sys/class/net/{dev}/address"),
        );
        out.trim().to_string()
    }

    /// CPU seconds (user + system) the lab's daemon `what` (`conntrackd`, `statewall`) of
    /// gateway `g` has used so far; `None` when it does not run.
    pub fn cpu_s(&self, g: &str, what: &str) -> Option<f64> {
        let pid = std::fs::read_to_string(self.dir.join(format!("{what}-{g}.pid"))).ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).ok()?;
        // Fields after the command name (which may hold spaces): state is field 3, utime and
        // stime fields 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some(ticks as f64 / 100.0)
    }

    /// One line of [`HaLab::cpu_s`] for conntrackd and the firewall on both gateways.
    pub fn cpu_report(&self) -> String {
        let mut parts = Vec::new();
        for what in ["conntrackd", "statewall"] {
            for g in ["a", "b"] {
                if let Some(s) = self.cpu_s(g, what) {
                    parts.push(format!("{what} {g} {s:.2}"));
                }
            }
        }
        format!("CPU seconds: {}", parts.join(", "))
    }

    /// The drops of Linux alone in gateway `g` (iptables and ip6tables FORWARD counters):
    /// `invalid` (the INVALID rule) and `policy` (the chain's DROP policy).
    pub fn linux_drops(&self, g: &str) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for ipt in ["iptables", "ip6tables"] {
            let text = self.ok(
                &format!("gw{g}"),
                10,
                &format!("{ipt} -w -L FORWARD -v -n -x"),
            );
            for line in text.lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                let (key, n) = if line.starts_with("Chain FORWARD (policy DROP") {
                    ("policy", words.get(4))
                } else if line.contains("ctstate INVALID") {
                    ("invalid", words.first())
                } else {
                    continue;
                };
                let n = n.and_then(|w| w.parse::<u64>().ok()).unwrap_or(0);
                *out.entry(key.to_string()).or_insert(0) += n;
            }
        }
        out
    }

    /// statewall's log (stderr) in gateway `g`.
    pub fn statewall_log(&self, g: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("statewall-{g}.out"))).unwrap_or_default()
    }

    /// `statewall ARGS --socket <gateway g's socket>`; returns stdout (must succeed).
    pub fn statewall(&self, g: &str, args: &[&str]) -> String {
        let sock = self.dir.join(format!("sw-{g}/control.sock"));
        let out = Command::new("timeout")
            .args(["-k", "2", "20"])
            .arg(env!("CARGO_BIN_EXE_statewall"))
            .args(args)
            .arg("--socket")
            .arg(&sock)
            .output()
            .expect("run statewall");
        assert!(
            out.status.success(),
            "statewall {args:?} on gw{g} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a capture in namespace `which` on eth0 (link-layer headers kept).
    pub fn capture(&mut self, which: &str, name: &str, filter: &str) -> Capture {
        let path = self.tmp.join(format!("{name}.pcap"));
        let err = self.tmp.join(format!("{name}.tcpdump"));
        let child = Command::new("timeout")
            .args(["-s", "INT", "240", "ip", "netns", "exec", &self.ns(which)])
            .args([
                "tcpdump",
                "-i",
                "eth0",
                "-U",
                "--immediate-mode",
                "-n",
                "-w",
            ])
            .arg(&path)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).expect("tcpdump log"))
            .spawn()
            .expect("tcpdump");
        let started = wait_for(10, || {
            std::fs::read_to_string(&err)
                .unwrap_or_default()
                .contains("listening on")
        });
        assert!(started, "tcpdump did not start in {which}");
        Capture { child, path }
    }
}

impl Drop for HaLab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
        }
        let _ = self.lab_cmd().arg("down").arg(&self.prefix).output();
        for c in &mut self.children {
            let _ = c.wait();
        }
        if std::env::var_os("E2E_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// A running tcpdump.
pub struct Capture {
    child: Child,
    path: PathBuf,
}

impl Capture {
    /// Stops it; returns `tcpdump -e -tt -n -r` of what it captured, one packet a line.
    pub fn stop(mut self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(200));
        signal(self.child.id(), "INT");
        let _ = self.child.wait();
        read_pcap(&self.path)
    }
}

fn read_pcap(path: &Path) -> Vec<String> {
    let out = Command::new("tcpdump")
        .args(["-e", "-tt", "-n", "-r"])
        .arg(path)
        .output()
        .expect("tcpdump -r");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The capture filter for TCP RSTs, v4 and v6 (no extension headers in this lab).
pub const RST_FILTER: &str =
    "((tcp[tcpflags] & tcp-rst) != 0) or (ip6 and ip6[6] == 6 and (ip6[53] & 4) != 0)";

/// The long-lived part of the workload: servers in srv and the idle connections from cli.
pub struct Workload {
    /// sha256 of the download.
    pub sum: String,
    /// The idle connections.
    pub idle: IdleSet,
}

impl Workload {
    /// Starts the echo and HTTP servers in srv, opens the idle connections from cli.
    pub fn start(lab: &mut HaLab) -> Workload {
        let www = lab.tmp.join("www");
        std::fs::create_dir_all(&www).expect("www");
        let file = www.join("big");
        let out = lab.ok(
            "srv",
            60,
            &format!(
                "head -c {DOWNLOAD_MIB}M /dev/urandom > {f} && sha256sum {f}",
                f = file.display()
            ),
        );
        let sum = out
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let apps = script("apps.py");
        lab.spawn(
            "srv",
            &format!("exec python3 {apps} echo-server {ECHO_PORT}"),
        );
        lab.spawn("srv", &format!("exec python3 {apps} udp-echo {UDP_PORT}"));
        lab.spawn(
            "srv",
            &format!("exec python3 {apps} httpd :: {HTTP_PORT} {}", www.display()),
        );
        for port in [ECHO_PORT, HTTP_PORT] {
            assert!(
                wait_for(10, || {
                    let out = lab.sh("srv", 5, "ss -Hltn");
                    String::from_utf8_lossy(&out.stdout).contains(&format!(":{port} "))
                }),
                "nothing listens on {port} in srv"
            );
        }
        let idle = lab.idle_set("idle", IDLE);
        Workload { sum, idle }
    }
}

/// How the master fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// SIGTERM to its keepalived (it gives the addresses up at once: priority 0).
    StopKeepalived,
    /// All three of its links down (the peer notices after three missed adverts).
    LinksDown,
}

/// Figures of one switch of the addresses from one gateway to the other.
#[derive(Clone, Debug)]
pub struct Switch {
    /// What happened.
    pub label: String,
    /// Trigger → the new master's MASTER notification, seconds.
    pub to_master_s: f64,
    /// The MASTER notification → the first packet the new master forwarded to the client.
    pub master_to_first_s: f64,
    /// Trigger → the first packet the new master forwarded to the client.
    pub to_first_s: f64,
    /// Longest silence of the UDP stream.
    pub outage_s: f64,
    /// UDP requests sent / lost.
    pub udp_sent: u64,
    /// Lost.
    pub udp_lost: u64,
    /// Lost requests sent outside the switch (trigger − 0.1 s .. first packet + 0.2 s).
    pub udp_lost_outside: u64,
    /// The download arrived complete and unchanged.
    pub download_ok: bool,
    /// Idle connections afterwards.
    pub idle: IdleCheck,
    /// RSTs seen by the client and by the server (echo, HTTP ports).
    pub rst_cli: usize,
    /// At the server.
    pub rst_srv: usize,
}

impl Switch {
    /// One table row.
    pub fn row(&self) -> String {
        format!(
            "{:<34} {:>7.2} {:>7.3} {:>7.2} {:>7.2} {:>5}/{:<5} {:>4} {:>8} {:>3}/{:<3} {:>3}/{:<3}",
            self.label,
            self.to_master_s,
            self.master_to_first_s,
            self.to_first_s,
            self.outage_s,
            self.udp_lost,
            self.udp_sent,
            self.udp_lost_outside,
            if self.download_ok { "exact" } else { "BROKEN" },
            self.idle.alive,
            IDLE,
            self.rst_cli,
            self.rst_srv,
        )
    }

    /// The table header.
    pub fn header() -> String {
        format!(
            "{:<34} {:>7} {:>7} {:>7} {:>7} {:>11} {:>4} {:>8} {:>7} {:>7}",
            "switch",
            "to_mstr",
            "m→1st",
            "to_1st",
            "outage",
            "udp lost",
            "out",
            "download",
            "idle",
            "rst c/s"
        )
    }

    /// Asserts what the issue demands of every switch.
    pub fn assert_clean(&self) {
        assert!(self.download_ok, "{}: download not byte-exact", self.label);
        assert_eq!(
            self.idle.alive, IDLE as u64,
            "{}: idle connections {:?}",
            self.label, self.idle
        );
        assert_eq!(
            (self.rst_cli, self.rst_srv),
            (0, 0),
            "{}: RSTs seen",
            self.label
        );
        assert_eq!(
            self.udp_lost_outside, 0,
            "{}: UDP lost outside the switch",
            self.label
        );
    }
}

/// Moves the addresses from gateway `from` to `to` while the download, the UDP stream and the
/// idle connections run, by `trigger` (which must make `to` the master within about
/// `span_s` seconds: the traffic lasts that long after the trigger), and measures.
pub fn switch(
    lab: &mut HaLab,
    w: &mut Workload,
    label: &str,
    (from, to): (&str, &str),
    span_s: u32,
    trigger: impl FnOnce(&HaLab),
) -> Switch {
    assert_eq!(lab.master(), from, "{label}: {from} must be master first");
    let new_mac = lab.mac(to, "lan0");
    let cap_cli = lab.capture(
        "cli",
        &format!("{label}-cli"),
        &format!("udp port {UDP_PORT} or ({RST_FILTER})"),
    );
    let cap_srv = lab.capture("srv", &format!("{label}-srv"), RST_FILTER);
    let streams = Streams::start(lab, label, span_s);
    let t_trigger = wall();
    let before = lab.notified(to, "MASTER").len();
    trigger(lab);
    assert!(
        wait_for(60, || lab.notified(to, "MASTER").len() > before),
        "{label}: {to} never became master:\n{}",
        lab.ha_logs()
    );
    let t_master = lab.notified(to, "MASTER")[before];
    lab.wait_master(to, 10);
    let (download_ok, udp) = streams.wait(w, span_s);
    let idle = w.idle.check(IDLE_CHECK_SECS);
    let cli = cap_cli.stop();
    let srv = cap_srv.stop();
    // First UDP answer after the trigger that came through the new master's MAC.
    let first = cli
        .iter()
        .filter(|l| l.contains(&format!("{new_mac} >")) && l.contains(&format!(".{UDP_PORT} >")))
        .filter_map(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .find(|t| *t >= t_trigger)
        .unwrap_or(f64::NAN);
    let lost_outside = udp["lost_sent_at"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_f64())
                .filter(|t| *t < t_trigger - 0.1 || *t > first + 0.2)
                .count() as u64
        })
        .unwrap_or(u64::MAX);
    Switch {
        label: label.to_string(),
        to_master_s: t_master - t_trigger,
        master_to_first_s: first - t_master,
        to_first_s: first - t_trigger,
        outage_s: udp["max_gap_s"].as_f64().unwrap_or(f64::NAN),
        udp_sent: udp["sent"].as_u64().unwrap_or(0),
        udp_lost: udp["lost"].as_u64().unwrap_or(u64::MAX),
        udp_lost_outside: lost_outside,
        download_ok,
        idle,
        rst_cli: rsts(&cli),
        rst_srv: rsts(&srv),
    }
}

/// RSTs of the echo and HTTP connections in `tcpdump -r` lines of a [`RST_FILTER`] capture.
pub fn rsts(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|l| {
            (l.contains(&format!(".{ECHO_PORT}")) || l.contains(&format!(".{HTTP_PORT}")))
                && l.contains("Flags [R")
        })
        .count()
}

/// The download and the UDP stream of one switch, from cli.
pub struct Streams {
    label: String,
    udp_out: PathBuf,
    dl_out: PathBuf,
}

impl Streams {
    /// Starts both; returns 2 s later. The download is rate-limited to last until `span_s`
    /// seconds after that, the UDP stream (a request every 10 ms) 1 s longer.
    pub fn start(lab: &mut HaLab, label: &str, span_s: u32) -> Streams {
        let tag = label.replace(' ', "-");
        let udp_out = lab.tmp.join(format!("udp-{tag}.json"));
        let dl_out = lab.tmp.join(format!("download-{tag}.sum"));
        let apps = script("apps.py");
        let rate_kib = u64::from(DOWNLOAD_MIB) * 1024 / u64::from(span_s + 2);
        lab.spawn(
            "cli",
            &format!(
                "curl -sS --fail --limit-rate {rate_kib}K http://{}:{HTTP_PORT}/big | sha256sum > {dl}.tmp && mv {dl}.tmp {dl}",
                SRV_V4,
                dl = dl_out.display()
            ),
        );
        lab.spawn(
            "cli",
            &format!(
                "exec python3 {apps} udp-stream {} {UDP_PORT} 10 {} {}",
                SRV_V4,
                span_s + 3,
                udp_out.display()
            ),
        );
        std::thread::sleep(Duration::from_secs(2));
        Streams {
            label: label.to_string(),
            udp_out,
            dl_out,
        }
    }

    /// Waits (bounded) for both to finish: whether the download arrived complete and
    /// unchanged, and the UDP stream's report (`apps.py udp-stream`).
    pub fn wait(self, w: &Workload, span_s: u32) -> (bool, serde_json::Value) {
        assert!(
            wait_for(u64::from(span_s) + 60, || self.udp_out.exists()
                && self.dl_out.exists()),
            "{}: the UDP stream or the download did not finish",
            self.label
        );
        let udp =
            serde_json::from_str(&std::fs::read_to_string(&self.udp_out).expect("udp report"))
                .expect("udp JSON");
        let got_sum = std::fs::read_to_string(&self.dl_out).unwrap_or_default();
        (
            got_sum.split_whitespace().next() == Some(w.sum.as_str()),
            udp,
        )
    }
}
