//! `statewall run` in the gateway namespace, the counters it logs at exit, and the control
//! client.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::lab::{signal, Lab};

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
        Self::start_env(lab, dir, extra, &[])
    }

    /// Like [`Statewall::start`], with `env` added to the daemon's environment (e.g. `TZ`).
    pub fn start_env(lab: &Lab, dir: &Path, extra: &str, env: &[(&str, &str)]) -> Statewall {
        std::fs::create_dir_all(dir).expect("state dir");
        let config = dir.join("statewall.toml");
        let text = format!(
            "{extra}\n[control]\nsocket = \"{}\"\n",
            dir.join("control.sock").display()
        );
        std::fs::write(&config, text).expect("write config");
        Self::spawn(lab, &config, dir, env)
    }

    /// Starts `statewall run --config CONFIG` (log in `dir`), waits until it runs.
    pub fn start_with(lab: &Lab, config: &Path, dir: &Path) -> Statewall {
        Self::spawn(lab, config, dir, &[])
    }

    fn spawn(lab: &Lab, config: &Path, dir: &Path, env: &[(&str, &str)]) -> Statewall {
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let log = dir.join(format!("statewall-{n}.log"));
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.ns("gw")])
            .arg(env!("CARGO_BIN_EXE_statewall"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .envs(env.iter().copied())
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

    /// The daemon's process id (`ip netns exec` execs it), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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

/// `statewall ARGS --socket SOCK`, bounded to 20 s (outside the lab: the socket is a file).
pub fn ctl(sock: &Path, args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["-k", "2", "20", env!("CARGO_BIN_EXE_statewall")])
        .args(args)
        .arg("--socket")
        .arg(sock)
        .output()
        .expect("run statewall client")
}

/// A command's stdout then stderr, for messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `statewall stats --json` over the control socket; the command must succeed.
pub fn stats_json(sock: &Path) -> serde_json::Value {
    let out = ctl(sock, &["stats", "--json"]);
    assert!(out.status.success(), "stats: {}", output_text(&out));
    serde_json::from_slice(&out.stdout).expect("stats json")
}

/// `statewall cleanup` in `lab`'s gateway: removes the diversion a stopped run leaves in place
/// (fail closed, `[netfilter] on_stop = "keep"`); must succeed.
pub fn cleanup(lab: &Lab) {
    lab.ok(
        "gw",
        10,
        &format!("{} cleanup", env!("CARGO_BIN_EXE_statewall")),
    );
}
