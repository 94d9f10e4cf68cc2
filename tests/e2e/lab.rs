//! The lab: three namespaces (`cli` — `gw` — `srv`, scripts/lab) per test, commands inside
//! them bounded by `timeout`, background processes and captures, all torn down on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{require, root};

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

    /// Starts a packet capture on eth0 of namespace `which` with `filter`; stop it with
    /// [`Capture::stop`].
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
