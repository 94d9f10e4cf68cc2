//! Helpers for the end-to-end tests: a lab of three network namespaces (scripts/lab) per test,
//! the real `statewall run` binary in the gateway namespace, commands bounded by `timeout`,
//! and a guard that always tears everything down.
//!
//! A missing tool or missing root privileges is a test failure, never a skip.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Lab addresses (DESIGN.md §6).
pub const CLI_V4: &str = "198.51.100.2";
pub const CLI_V6: &str = "2001:db8:1::2";
pub const SRV_V4: &str = "203.0.113.2";
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

/// One lab; dropped → every process in it killed, namespaces and temp files removed.
pub struct Lab {
    /// Namespace prefix.
    pub prefix: String,
    /// Temporary directory of this test.
    pub tmp: PathBuf,
    children: Vec<Child>,
}

impl Lab {
    /// Brings a lab up with a fresh prefix.
    pub fn up() -> Lab {
        require(&[
            "ip",
            "iptables",
            "ip6tables",
            "python3",
            "curl",
            "tcpdump",
            "timeout",
            "iperf3",
            "sha256sum",
        ]);
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("e2e{}{}-", std::process::id() % 100_000, n);
        let tmp = std::env::temp_dir().join(format!("statewall-{prefix}"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).expect("temp dir");
        let lab = Lab {
            prefix,
            tmp,
            children: Vec::new(),
        };
        let out = Command::new(root().join("scripts/lab"))
            .args(["up", &lab.prefix])
            .output()
            .expect("run scripts/lab");
        assert!(
            out.status.success(),
            "lab up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    /// Full namespace name of `cli`, `gw` or `srv`.
    pub fn ns(&self, which: &str) -> String {
        format!("{}{which}", self.prefix)
    }

    /// Runs `sh -c SCRIPT` in namespace `which`, bounded by `secs`; returns its output.
    pub fn sh(&self, which: &str, secs: u32, script: &str) -> Output {
        Command::new("timeout")
            .args(["-k", "2", &secs.to_string(), "ip", "netns", "exec"])
            .arg(self.ns(which))
            .args(["sh", "-c", script])
            .output()
            .expect("run timeout/ip")
    }

    /// Like [`Lab::sh`], but the command must succeed; returns its stdout.
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

    /// Starts `sh -c SCRIPT` in the background in namespace `which` (killed at teardown).
    pub fn spawn(&mut self, which: &str, script: &str) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(which), "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        self.children.push(child);
    }

    /// Waits until something listens on PORT (tcp) in namespace `which`.
    pub fn wait_port(&self, which: &str, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out = self.sh(which, 5, "ss -Hltn");
            let text = String::from_utf8_lossy(&out.stdout);
            if text
                .lines()
                .filter_map(|l| l.split_whitespace().nth(3))
                .any(|a| a.ends_with(&format!(":{port}")))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nothing listens on port {port} in {which}");
    }

    /// Starts a packet capture on srv's eth0 with `filter`; stop it with [`Capture::stop`].
    pub fn capture(&mut self, which: &str, name: &str, filter: &str) -> Capture {
        let path = self.tmp.join(format!("{name}.pcap"));
        let child = Command::new("timeout")
            .args(["-s", "INT", "120", "ip", "netns", "exec", &self.ns(which)])
            .args(["tcpdump", "-i", "eth0", "-U", "--immediate-mode", "-w"])
            .arg(&path)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        // tcpdump says "listening on" once the capture runs.
        std::thread::sleep(Duration::from_millis(700));
        Capture { child, path }
    }

    /// iptables-save + ip6tables-save of the gateway.
    pub fn gw_rules(&self) -> String {
        self.ok("gw", 10, "iptables-save; ip6tables-save")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
        }
        let _ = Command::new(root().join("scripts/lab"))
            .args(["down", &self.prefix])
            .output();
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
    /// The pcap file.
    pub path: PathBuf,
}

impl Capture {
    /// Stops the capture (SIGINT) and returns the file.
    pub fn stop(mut self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(300));
        signal(self.child.id(), "INT");
        let _ = self.child.wait();
        self.path.clone()
    }
}

/// Sends a signal with kill(1) (the crate forbids unsafe code, so no libc::kill).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

/// The statewall daemon running in the gateway namespace.
pub struct Statewall {
    child: Option<Child>,
    /// Its stderr.
    pub log: PathBuf,
}

impl Statewall {
    /// Writes a config (control socket and runtime directory under `dir`, `extra` TOML
    /// appended) and starts `statewall run` in `lab`'s gateway; waits until it runs.
    pub fn start(lab: &Lab, dir: &Path, extra: &str) -> Statewall {
        std::fs::create_dir_all(dir).expect("state dir");
        let config = dir.join("statewall.toml");
        let text = format!(
            "{extra}\n[control]\nsocket = \"{}\"\n",
            dir.join("control.sock").display()
        );
        std::fs::write(&config, text).expect("write config");
        Self::start_with(lab, &config, dir)
    }

    /// Starts `statewall run --config CONFIG` (log in `dir`), waits until it runs.
    pub fn start_with(lab: &Lab, config: &Path, dir: &Path) -> Statewall {
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let log = dir.join(format!("statewall-{n}.log"));
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.ns("gw")])
            .arg(env!("CARGO_BIN_EXE_statewall"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start statewall");
        let sw = Statewall {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sw.log_text().contains("statewall running") {
            assert!(
                Instant::now() < deadline,
                "statewall did not start:\n{}",
                sw.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sw
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; asserts a clean exit within 2 s; returns the final stats.
    pub fn stop(mut self) -> FinalStats {
        let mut child = self.child.take().expect("running");
        let t0 = Instant::now();
        signal(child.id(), "TERM");
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(5) {
                let _ = child.kill();
                panic!("statewall still running 5 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let took = t0.elapsed();
        let log = self.log_text();
        assert!(status.success(), "statewall exited with {status}:\n{log}");
        assert!(
            took < Duration::from_secs(2),
            "statewall took {took:?} to exit"
        );
        FinalStats::parse(&log)
    }

    /// SIGKILL (no cleanup).
    pub fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Statewall {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `final stats key=value ...` line statewall logs at exit.
#[derive(Debug)]
pub struct FinalStats {
    /// key → value.
    pub values: HashMap<String, u64>,
    /// The line itself.
    pub line: String,
}

impl FinalStats {
    /// Parses the last `final stats` line of a log.
    pub fn parse(log: &str) -> FinalStats {
        let line = log
            .lines()
            .rev()
            .find_map(|l| l.split_once("final stats ").map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no final stats line in:\n{log}"))
            .to_string();
        let values = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect();
        FinalStats { values, line }
    }

    /// A counter (0 when absent).
    pub fn get(&self, key: &str) -> u64 {
        self.values.get(key).copied().unwrap_or(0)
    }

    /// Asserts that nothing was dropped, by statewall or by the kernel queue.
    pub fn assert_no_drops(&self) {
        self.assert_no_drops_except(&[]);
    }

    /// Like [`FinalStats::assert_no_drops`], tolerating drops for the reasons in `allowed`.
    pub fn assert_no_drops_except(&self, allowed: &[&str]) {
        let tolerated: u64 = allowed.iter().map(|r| self.get(&format!("drop.{r}"))).sum();
        assert_eq!(
            self.get("dropped"),
            tolerated,
            "drops other than {allowed:?}: {}",
            self.line
        );
        for key in [
            "recv_errors",
            "verdict_errors",
            "panics",
            "kernel_queue_dropped",
            "kernel_user_dropped",
        ] {
            assert_eq!(self.get(key), 0, "{key} != 0: {}", self.line);
        }
        assert!(self.get("packets") > 0, "no packet seen: {}", self.line);
    }
}
