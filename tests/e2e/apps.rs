//! The traffic endpoints of `tests/e2e/apps.py`, as the tests start them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::lab::Lab;
use super::{script, wait_for};

/// Serves `files` (name → MiB of random data) and a `small` file (`small\n`) over HTTP on
/// port 8080, IPv4 and IPv6, from srv (`apps.py httpd`); returns the sha256 of each of `files`
/// by name, in order.
pub fn http_server(lab: &mut Lab, files: &[(&str, u32)]) -> Vec<(String, String)> {
    let dir = lab.tmp.join("www");
    std::fs::create_dir_all(&dir).expect("www");
    let mut sums = Vec::new();
    for (name, mib) in files {
        let path = dir.join(name);
        let out = lab.ok(
            "srv",
            60,
            &format!(
                "head -c {}M /dev/urandom > {p} && sha256sum {p}",
                mib,
                p = path.display()
            ),
        );
        let sum = out
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        sums.push((name.to_string(), sum));
    }
    std::fs::write(dir.join("small"), "small\n").expect("small file");
    lab.spawn(
        "srv",
        &format!(
            "exec python3 {} httpd :: 8080 {}",
            script("apps.py"),
            dir.display()
        ),
    );
    lab.wait_port("srv", 8080);
    sums
}

/// `http://ADDR:PORT/PATH`, with IPv6 addresses in brackets.
pub fn url(addr: &str, port: u16, path: &str) -> String {
    if addr.contains(':') {
        format!("http://[{addr}]:{port}/{path}")
    } else {
        format!("http://{addr}:{port}/{path}")
    }
}

/// Idle TCP connections from the client to an echo server, held by one `apps.py idle-set`
/// process (each exchanged a line when it opened); a check sends a line on every one.
pub struct IdleSet {
    dir: PathBuf,
    log: PathBuf,
    checks: u32,
    /// How many.
    pub n: usize,
}

impl IdleSet {
    /// Opens `n` connections to `addr`'s port `port`: `spawn` runs the client's command line
    /// in the lab's client namespace; its files go under `tmp`. Waits up to `ready_secs` for
    /// all of them to be open.
    pub fn open(
        tmp: &Path,
        name: &str,
        (addr, port): (&str, u16),
        n: usize,
        ready_secs: u64,
        spawn: impl FnOnce(&str),
    ) -> IdleSet {
        let dir = tmp.join(name);
        std::fs::create_dir_all(&dir).expect("idle dir");
        let log = tmp.join(format!("{name}.log"));
        spawn(&format!(
            "ulimit -n 65536; exec python3 {} idle-set {addr} {port} {n} {} > {} 2>&1",
            script("apps.py"),
            dir.display(),
            log.display()
        ));
        assert!(
            wait_for(ready_secs, || dir.join("ready").exists()),
            "idle connections {name} not opened: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        IdleSet {
            dir,
            log,
            checks: 0,
            n,
        }
    }

    /// [`IdleSet::open`] from `lab`'s client namespace.
    pub fn in_lab(
        lab: &mut Lab,
        name: &str,
        to: (&str, u16),
        n: usize,
        ready_secs: u64,
    ) -> IdleSet {
        let tmp = lab.tmp.clone();
        IdleSet::open(&tmp, name, to, n, ready_secs, |cmd| lab.spawn("cli", cmd))
    }

    /// Sends one line on every connection and waits up to `secs` for the round's result.
    pub fn check(&mut self, secs: u64) -> IdleCheck {
        let round = self.ask();
        self.result(&round, secs)
    }

    /// Starts a round (one line on every connection); returns its name for
    /// [`IdleSet::result`].
    pub fn ask(&mut self) -> String {
        self.checks += 1;
        let round = format!("c{}", self.checks);
        std::fs::write(self.dir.join(format!("check-{round}")), "").expect("check file");
        round
    }

    /// Waits up to `secs` for the result of `round` (the helper writes it at once; it is read
    /// until it parses).
    pub fn result(&self, round: &str, secs: u64) -> IdleCheck {
        let path = self.dir.join(format!("result-{round}"));
        let mut v = serde_json::Value::Null;
        assert!(
            wait_for(secs, || {
                v = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or(serde_json::Value::Null);
                !v.is_null()
            }),
            "idle check {round} hangs: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        let n = |k: &str| v[k].as_u64().unwrap_or(u64::MAX);
        IdleCheck {
            alive: n("alive"),
            reset: n("reset"),
            closed: n("closed"),
            timeout: n("timeout"),
            other: n("other"),
        }
    }

    /// Closes them.
    pub fn close(self) {
        let _ = std::fs::write(self.dir.join("stop"), "");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// One round of lines over the idle connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdleCheck {
    /// Answered.
    pub alive: u64,
    /// Reset.
    pub reset: u64,
    /// Closed by the peer.
    pub closed: u64,
    /// No answer within 10 s.
    pub timeout: u64,
    /// Anything else.
    pub other: u64,
}
