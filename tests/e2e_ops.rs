//! End-to-end tests of the daemon's operations: every exit path and what it leaves behind,
//! atomic installs, the watchdog following the workers, caught action panics, and the daemon
//! running as the packaged unit runs it (user `statewall`, two ambient capabilities).
#![cfg(feature = "e2e")]

// Not every helper of the shared harness is used here.
#[allow(dead_code)]
mod e2e;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use e2e::{http_server, signal, FinalStats, Lab, SRV_V4};

const BIN: &str = env!("CARGO_BIN_EXE_statewall");

/// A `statewall run` started by hand (environment, wrapper command, no wait for readiness).
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `[wrapper...] statewall run --config CONFIG` in the gateway with `env`.
    fn spawn(
        lab: &Lab,
        config: &Path,
        env: &[(&str, &str)],
        wrapper: &[&str],
        bin: &str,
    ) -> Daemon {
        let dir = config.parent().expect("config dir");
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let log = dir.join(format!("daemon-{n}.log"));
        // `exec` keeps the shell's pid through `ip netns exec`: WATCHDOG_PID names the daemon.
        let script = format!(
            "export WATCHDOG_PID=$$; exec ip netns exec {} {} {} run --config {}",
            lab.ns("gw"),
            wrapper.join(" "),
            bin,
            config.display()
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon {
            child: cmd.spawn().expect("start statewall"),
            log,
        }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    fn wait_log(&self, needle: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "`{needle}` not logged within {secs} s:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_exit(&mut self, secs: u64) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "statewall still running after {secs} s:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, exit 0 within 2 s; the final stats.
    fn stop(mut self) -> (FinalStats, String) {
        signal(self.child.id(), "TERM");
        let status = self.wait_exit(2);
        let log = self.text();
        assert!(status.success(), "exit {status}:\n{log}");
        (FinalStats::parse(&log), log)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `statewall.toml` in `dir` (socket in `dir`) with `extra` TOML.
fn config(dir: &Path, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    let path = dir.join("statewall.toml");
    let text = format!(
        "{extra}\n[log]\nstats_interval = 0\n[control]\nsocket = \"{}\"\n",
        dir.join("control.sock").display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// Whether an HTTP GET from cli to srv gets through within 3 s.
fn passes(lab: &Lab) -> bool {
    lab.sh(
        "cli",
        6,
        &format!("curl -sf --max-time 3 http://{SRV_V4}:8080/small"),
    )
    .status
    .success()
}

fn jumps(lab: &Lab) -> usize {
    lab.gw_rules().matches("-A FORWARD -j STATEWALL").count()
}

#[test]
fn every_exit_keeps_the_diversion_unless_configured_and_cleanup_removes_it() {
    let mut lab = Lab::up();
    http_server(&mut lab, &[]);
    let dir = lab.tmp.join("sw");
    let keep = config(&dir, "");
    assert!(passes(&lab), "no statewall, no rules: traffic passes");

    // SIGTERM, on_stop = "keep" (default): rules stay, traffic is dropped until the next run.
    let d = Daemon::spawn(&lab, &keep, &[], &[], BIN);
    d.wait_log("statewall running", 10);
    assert!(passes(&lab));
    let (_, log) = d.stop();
    assert!(log.contains("netfilter rules left in place"), "{log}");
    assert_eq!(jumps(&lab), 2, "{}", lab.gw_rules());
    assert!(!passes(&lab), "traffic passed unjudged after SIGTERM");

    // The next start replaces them (one jump per family) and traffic flows; SIGKILL keeps them.
    let d = Daemon::spawn(&lab, &keep, &[], &[], BIN);
    d.wait_log("statewall running", 10);
    assert_eq!(jumps(&lab), 2);
    assert!(passes(&lab));
    drop(d);
    assert_eq!(jumps(&lab), 2, "rules after SIGKILL");
    assert!(!passes(&lab));

    // A setup error before the install (the control socket path is a regular file): exit 1,
    // the earlier run's rules untouched (traffic still waits), the log says why.
    let _ = std::fs::remove_file(dir.join("control.sock"));
    std::fs::write(dir.join("control.sock"), "not a socket").expect("write");
    let mut d = Daemon::spawn(&lab, &keep, &[], &[], BIN);
    let status = d.wait_exit(10);
    let log = d.text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("not a socket") && log.contains("netfilter rules not touched"),
        "{log}"
    );
    assert_eq!(jumps(&lab), 2);
    assert!(!passes(&lab), "traffic passed unjudged after a setup error");
    std::fs::remove_file(dir.join("control.sock")).expect("rm");

    // A worker that fails for good: exit 1, rules kept.
    let mut d = Daemon::spawn(
        &lab,
        &keep,
        &[("FAULT_INJECT_STATEWALL", "recv_error")],
        &[],
        BIN,
    );
    d.wait_log("statewall running", 10);
    let _ = passes(&lab);
    let status = d.wait_exit(15);
    let log = d.text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("queue worker failed") && log.contains("left in place"),
        "{log}"
    );
    assert_eq!(jumps(&lab), 2);

    // SIGTERM, on_stop = "remove": the rules go, traffic passes unjudged.
    let remove = config(&dir, "[netfilter]\non_stop = \"remove\"\n");
    let d = Daemon::spawn(&lab, &remove, &[], &[], BIN);
    d.wait_log("statewall running", 10);
    let (_, log) = d.stop();
    assert!(log.contains("netfilter rules removed"), "{log}");
    assert!(!lab.gw_rules().contains("STATEWALL"), "{}", lab.gw_rules());
    assert!(passes(&lab));

    // `statewall cleanup` removes what a kept run left, and says when there is nothing.
    let d = Daemon::spawn(&lab, &keep, &[], &[], BIN);
    d.wait_log("statewall running", 10);
    drop(d);
    let out = lab.sh(
        "gw",
        10,
        &format!("{BIN} cleanup --config {}", keep.display()),
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rules removed"));
    assert!(!lab.gw_rules().contains("STATEWALL"));
    let out = lab.sh(
        "gw",
        10,
        &format!("{BIN} cleanup --config {}", keep.display()),
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no statewall rules"));
}

#[test]
fn a_failed_install_leaves_nothing_half_done() {
    let lab = Lab::up();
    let dir = lab.tmp.join("sw");
    let cfg = config(&dir, "");
    // ip6tables-restore that passes the test run and fails the commit: the IPv4 transaction,
    // already committed, must be undone; one that fails the test run: nothing is committed.
    let fake = lab.tmp.join("bin");
    std::fs::create_dir_all(&fake).expect("bin");
    let script = fake.join("ip6tables-restore");
    for (mode, what) in [
        ("commit", "after the IPv4 commit"),
        ("test", "at the test run"),
    ] {
        let fail_if = if mode == "commit" {
            "case \" $* \" in *\" --test \"*) exec /usr/sbin/ip6tables-restore \"$@\";; esac"
        } else {
            ""
        };
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n{fail_if}\necho 'injected ip6tables-restore failure' >&2\nexit 1\n"
            ),
        )
        .expect("write fake");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = format!(
            "{}:{}",
            fake.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut d = Daemon::spawn(&lab, &cfg, &[("PATH", &path)], &[], BIN);
        let status = d.wait_exit(10);
        let log = d.text();
        assert_eq!(status.code(), Some(1), "{what}: {log}");
        assert!(
            log.contains("injected ip6tables-restore failure"),
            "{what}: {log}"
        );
        assert!(
            log.contains("netfilter rules not installed"),
            "{what}: {log}"
        );
        assert!(
            !lab.gw_rules().contains("STATEWALL"),
            "{what}:\n{}",
            lab.gw_rules()
        );
    }
}

#[test]
fn the_control_socket_answers_while_the_rules_are_installed() {
    let lab = Lab::up();
    let dir = lab.tmp.join("sw");
    let cfg = config(&dir, "");
    // An iptables-restore that asks the daemon for its status before committing the rules:
    // a client waiting for the rules must find the control socket listening.
    let fake = lab.tmp.join("bin");
    std::fs::create_dir_all(&fake).expect("bin");
    let asked = dir.join("status-during-install.txt");
    std::fs::write(
        fake.join("iptables-restore"),
        format!(
            "#!/bin/sh
case \" $* \" in *\" --test \"*) ;; *) {BIN} status --config {} \
             >> {} 2>&1; echo \"rc=$?\" >> {};; esac\nexec /usr/sbin/iptables-restore \"$@\"\n",
            cfg.display(),
            asked.display(),
            asked.display()
        ),
    )
    .expect("write fake");
    std::fs::set_permissions(
        fake.join("iptables-restore"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    let path = format!(
        "{}:{}",
        fake.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let d = Daemon::spawn(&lab, &cfg, &[("PATH", &path)], &[], BIN);
    d.wait_log("statewall running", 10);
    let log = d.text();
    let ready = log.find("control socket ready").expect("socket logged");
    let installed = log
        .find("netfilter rules installed")
        .expect("install logged");
    assert!(ready < installed, "{log}");
    let answer = std::fs::read_to_string(&asked).unwrap_or_default();
    assert!(
        answer.contains("rc=0"),
        "status during the install:\n{answer}\n{log}"
    );
    assert!(answer.contains(", pid "), "{answer}");
    let _ = d.stop();
}

/// Reads notifications from a NOTIFY_SOCKET until `until`; returns them in order.
fn notifications(sock: &UnixDatagram, until: Instant) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        let _ = sock.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match sock.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    got
}

#[test]
fn the_watchdog_follows_the_workers_and_action_panics_are_caught() {
    let mut lab = Lab::up();
    http_server(&mut lab, &[]);
    let dir = lab.tmp.join("sw");
    let rules = dir.join("web.rules");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        &rules,
        "policy drop\nallow tcp to any port 8080 log label \"web\"\n",
    )
    .expect("rules");
    let cfg = config(
        &dir,
        &format!("rules = \"{}\"\n[queue]\ncount = 2\n", rules.display()),
    );
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("notify socket");
    let notify = sock_path.display().to_string();
    let env = [
        ("NOTIFY_SOCKET", notify.as_str()),
        ("WATCHDOG_USEC", "2000000"),
    ];

    // Idle queues are alive: pings keep coming for seconds without a packet.
    let d = Daemon::spawn(&lab, &cfg, &env, &[], BIN);
    d.wait_log("statewall running", 10);
    let seen = notifications(&sock, Instant::now() + Duration::from_secs(3));
    assert!(seen.iter().any(|m| m.contains("READY=1")), "{seen:?}");
    let pings = seen.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(
        pings >= 5,
        "only {pings} watchdog pings in 3 s while idle: {seen:?}"
    );
    d.stop();

    // A panic while performing the actions (the rule's log line) is caught and counted; the
    // packets still get their verdicts.
    let fault = [("FAULT_INJECT_STATEWALL", "action_panic")];
    let d = Daemon::spawn(&lab, &cfg, &fault, &[], BIN);
    d.wait_log("statewall running", 10);
    assert!(passes(&lab), "traffic must pass despite the action panics");
    let (stats, log) = d.stop();
    assert!(stats.get("panics") >= 1, "{}", stats.line);
    assert!(log.contains("action handling panicked"), "{log}");
    assert_eq!(stats.get("dropped"), 0, "{}", stats.line);

    // A worker that stalls stops the pings (systemd would then restart statewall).
    let mut env_stall = env.to_vec();
    env_stall.push(("FAULT_INJECT_STATEWALL", "stall"));
    let d = Daemon::spawn(&lab, &cfg, &env_stall, &[], BIN);
    d.wait_log("statewall running", 10);
    let _ = notifications(&sock, Instant::now() + Duration::from_millis(500));
    let _ = passes(&lab);
    d.wait_log("injected stall", 10);
    d.wait_log("stuck or dead: watchdog pings stopped", 10);
    // Pings already on their way are drained, then none may come.
    let _ = notifications(&sock, Instant::now() + Duration::from_millis(300));
    let late = notifications(&sock, Instant::now() + Duration::from_secs(2));
    assert!(
        !late.iter().any(|m| m.contains("WATCHDOG=1")),
        "pings went on with a stalled worker: {late:?}"
    );
}

/// A system user made from the shipped sysusers.d line, under a name unique to this run (the
/// host keeps no `statewall` user of ours); deleted with its group when dropped.
struct User {
    name: String,
}

impl User {
    /// `systemd-sysusers` with the shipped `u statewall ...` line, the name replaced.
    fn create(dir: &Path) -> User {
        let shipped = std::fs::read_to_string(e2e::root().join("systemd/statewall.sysusers"))
            .expect("read systemd/statewall.sysusers");
        let name = format!("swe2e{}", std::process::id());
        let line = shipped
            .lines()
            .find(|l| l.starts_with("u statewall "))
            .expect("a `u statewall` line")
            .replacen("u statewall ", &format!("u {name} "), 1);
        let conf = dir.join(format!("{name}.conf"));
        std::fs::write(&conf, format!("{line}\n")).expect("write sysusers file");
        let user = User { name };
        let out = Command::new("systemd-sysusers")
            .arg(&conf)
            .output()
            .expect("systemd-sysusers is missing: run scripts/setup");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        user
    }

    fn id(&self, what: &str) -> u32 {
        let out = Command::new("id")
            .args([what, &self.name])
            .output()
            .expect("id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
        let _ = Command::new("groupdel").arg(&self.name).output();
    }
}

#[test]
fn runs_as_the_unit_runs_it_a_system_user_with_two_capabilities() {
    let mut lab = Lab::up();
    e2e::require(&[
        "setpriv",
        "unshare",
        "systemd-sysusers",
        "systemd-analyze",
        "userdel",
        "groupdel",
    ]);
    let user = User::create(&lab.tmp);
    let (uid, gid) = (user.id("-u"), user.id("-g"));
    http_server(&mut lab, &[]);
    // What the unit sets up: a runtime directory owned by the user, mode 0750.
    let dir = lab.tmp.join("run");
    std::fs::create_dir_all(&dir).expect("dir");
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    let rules = lab.tmp.join("web.rules");
    std::fs::write(
        &rules,
        "policy drop\nallow tcp to any port 8080\nreject tcp to any port 8081\n",
    )
    .expect("rules");
    // Syslog lines (RFC 3164, local time) to a listener in the gateway: the daemon reads the
    // system's zone under the sandbox (below, /etc/localtime is Asia/Kolkata's for it).
    let syslog_out = lab.tmp.join("syslog.out");
    lab.spawn(
        "gw",
        &format!(
            "exec python3 -c 'import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             s.bind((\"127.0.0.1\",5515))\nf=open(sys.argv[1],\"ab\",0)\n\
             while True: f.write(s.recv(65535)+b\"\\n\")' {}",
            syslog_out.display()
        ),
    );
    let cfg = dir.join("statewall.toml");
    let text = format!(
        "rules = \"{}\"\n[log]\nstats_interval = 0\n[control]\nsocket = \"{}\"\ngroup = \"{}\"\n\
         [syslog]\ntarget = \"udp://127.0.0.1:5515\"\n",
        rules.display(),
        dir.join("control.sock").display(),
        user.name
    );
    std::fs::write(&cfg, text).expect("write config");
    // The binary where the user can run it, whatever the checkout's permissions.
    let bin = lab.tmp.join("statewall");
    std::fs::copy(BIN, &bin).expect("copy binary");
    let bin = bin.display().to_string();
    let (reuid, regid) = (
        format!("--reuid={}", user.name),
        format!("--regid={}", user.name),
    );
    // The unit's /proc (ProtectProc=invisible, ProcSubset=pid: a proc of its own, mounted
    // as systemd mounts it) and another time zone in /etc/localtime (a bind mount over its
    // target) in a mount namespace of the daemon's own, then the user and the
    // capabilities, then the unit's system call filter (tests/e2e/sandbox.py reads it from
    // the unit file), in systemd's order. Copies where the user can read them.
    let proc_subset = lab.tmp.join("proc-subset.sh");
    std::fs::write(
        &proc_subset,
        "#!/bin/sh
mount -t proc -o hidepid=invisible,subset=pid proc /proc &&
mount --bind /usr/share/zoneinfo/Asia/Kolkata /etc/localtime && exec \"$@\"\n",
    )
    .expect("write");
    std::fs::set_permissions(&proc_subset, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let sandbox = lab.tmp.join("sandbox.py");
    std::fs::copy(e2e::script("sandbox.py"), &sandbox).expect("copy sandbox.py");
    let unit = lab.tmp.join("statewall.service");
    std::fs::copy(e2e::root().join("systemd/statewall.service"), &unit).expect("copy unit");
    let (proc_subset, sandbox, unit) = (
        proc_subset.display().to_string(),
        sandbox.display().to_string(),
        unit.display().to_string(),
    );
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation=private",
        &proc_subset,
        "setpriv",
        &reuid,
        &regid,
        "--init-groups",
        "--inh-caps=-all,+net_admin,+net_raw",
        "--ambient-caps=-all,+net_admin,+net_raw",
        "--bounding-set=-all,+net_admin,+net_raw",
        "--no-new-privs",
        "/usr/bin/python3",
        &sandbox,
        &unit,
        "--",
    ];
    let d = Daemon::spawn(&lab, &cfg, &[], &wrapper, &bin);
    d.wait_log("statewall running", 10);

    // The process: the user, exactly the two capabilities, no new privileges, a seccomp
    // filter, the unit's /proc.
    let pid = d.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert!(field("Uid:").starts_with(&format!("{uid}\t")), "{status}");
    let caps = (1u64 << 12) | (1u64 << 13); // CAP_NET_ADMIN, CAP_NET_RAW
    for k in ["CapEff:", "CapAmb:", "CapBnd:"] {
        assert_eq!(u64::from_str_radix(&field(k), 16).expect(k), caps, "{k}");
    }
    assert_eq!(
        (field("NoNewPrivs:"), field("Seccomp:")),
        ("1".into(), "2".into()),
        "{status}"
    );
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(" /proc ") && l.contains("subset=pid")),
        "{mounts}"
    );
    // The kernel's per-queue counters are root's (mode 0440): out of the user's reach, which
    // the daemon says at start instead of going blind silently.
    d.wait_log("cannot read the kernel's queue counters", 5);
    // iptables-restore ran as a child with the ambient capabilities.
    assert_eq!(jumps(&lab), 2, "{}", lab.gw_rules());
    // Queues work (allowed traffic passes), raw sockets work (a reject is answered with a
    // RST: curl fails at once with "connection refused" instead of timing out).
    assert!(passes(&lab));
    let t0 = Instant::now();
    let refused = lab.sh(
        "cli",
        6,
        &format!("curl -s --max-time 3 http://{SRV_V4}:8081/"),
    );
    assert_eq!(refused.status.code(), Some(7), "curl: {:?}", refused);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "no RST: {:?}",
        t0.elapsed()
    );
    // The reject's syslog line is stamped in the zone of the daemon's /etc/localtime.
    let reject_line = || {
        std::fs::read_to_string(&syslog_out)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains("REASON=policy_reject"))
            .map(str::to_owned)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while reject_line().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let line = reject_line().unwrap_or_default();
    let now: Vec<String> = ["-d '1 min ago' ", ""]
        .iter()
        .map(|ago| {
            lab.ok("gw", 5, &format!("TZ=Asia/Kolkata date {ago}'+%H:%M'"))
                .trim()
                .to_owned()
        })
        .collect();
    // `<PRI>Mmm dd hh:mm:ss`: the time of day after the priority and the date.
    let hhmm = line
        .find('>')
        .and_then(|i| line.get(i + 8..i + 13))
        .unwrap_or_default();
    assert!(
        now.iter().any(|t| t == hhmm),
        "not Asia/Kolkata's time ({now:?}): {line:?}"
    );
    // The control socket: the daemon's user and group, mode 0660, reached by root and by a
    // member of the group; who reloaded is logged.
    let sock = dir.join("control.sock");
    let meta = std::fs::metadata(&sock).expect("socket");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (uid, gid, 0o660)
    );
    lab.ok(
        "gw",
        10,
        &format!("{bin} reload --socket {}", sock.display()),
    );
    let as_member = lab.sh(
        "gw",
        10,
        &format!(
            "setpriv --reuid=65534 --regid={gid} --clear-groups {bin} status --socket {}",
            sock.display()
        ),
    );
    assert!(as_member.status.success(), "{:?}", as_member);
    d.wait_log("control request uid=0", 5);

    let (stats, log) = d.stop();
    assert!(log.contains("left in place"), "{log}");
    assert_eq!(stats.get("recv_errors"), 0, "{}", stats.line);
    lab.ok(
        "gw",
        10,
        &format!("{bin} cleanup --config {}", cfg.display()),
    );
    assert!(!lab.gw_rules().contains("STATEWALL"));
}

/// `statewall reload ARGS` over `sock` in the gateway as `who` (a `setpriv` prefix or ""),
/// bounded to 10 s; (succeeded, seconds taken, stdout + stderr).
fn reload_as(lab: &Lab, who: &str, sock: &Path) -> (bool, f64, String) {
    let t0 = Instant::now();
    let out = lab.sh(
        "gw",
        10,
        &format!("{who} {BIN} reload --socket {}", sock.display()),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), t0.elapsed().as_secs_f64(), text)
}

#[test]
fn a_reload_of_a_fifo_or_an_oversized_include_fails_at_once_and_keeps_the_running_rules() {
    let mut lab = Lab::up();
    http_server(&mut lab, &[]);
    let dir = lab.tmp.join("sw");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let rules = dir.join("web.rules");
    let running = "policy drop\nallow tcp to any port 8080\n";
    std::fs::write(&rules, running).expect("rules");
    // Only root may read the rule files; the socket's group is nogroup, so that an
    // unprivileged user (nobody) can ask for a reload.
    std::fs::set_permissions(&rules, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let sock = dir.join("control.sock");
    let cfg = dir.join("statewall.toml");
    std::fs::write(
        &cfg,
        format!(
            "rules = \"{}\"\n[log]\nstats_interval = 0\n[control]\nsocket = \"{}\"\ngroup = \"nogroup\"\n",
            rules.display(),
            sock.display()
        ),
    )
    .expect("config");
    let d = Daemon::spawn(&lab, &cfg, &[], &[], BIN);
    d.wait_log("statewall running", 10);
    assert!(passes(&lab));
    let nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups";

    // An include of a FIFO nobody writes to (a blocking open would wait forever), then of a
    // file one byte over the 4 MiB limit: each reload fails at once, saying why.
    let fifo = dir.join("fifo.rules");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let huge = dir.join("huge.rules");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(4 * 1024 * 1024 + 1))
        .expect("huge file");
    for (include, why) in [
        ("fifo.rules", "not a regular file (a FIFO)"),
        ("huge.rules", "larger than the limit of 4194304 bytes"),
    ] {
        std::fs::write(&rules, format!("{running}include \"{include}\"\n")).expect("rules");
        let (ok, secs, text) = reload_as(&lab, "", &sock);
        assert!(!ok && text.contains(why), "{include}: {text}");
        assert!(secs < 5.0, "{include}: the reload took {secs:.1} s");
        assert!(passes(&lab), "{include}: the running rules went");
    }

    // The same through SIGHUP (the main thread): the failure is logged and the daemon still
    // stops at once on SIGTERM, so the main thread was not left blocked on the FIFO.
    std::fs::write(&rules, format!("{running}include \"fifo.rules\"\n")).expect("rules");
    signal(d.child.id(), "HUP");
    d.wait_log("FIFO", 10);
    assert!(passes(&lab));

    // A rule file with an error: root, who may read it, gets the offending source line; nobody
    // gets the error's position and message, not the line (which holds a secret comment).
    std::fs::write(
        &rules,
        format!("{running}allow tcp to any port 99999 # secret-4f2a\n"),
    )
    .expect("rules");
    let (ok, _, as_root) = reload_as(&lab, "", &sock);
    assert!(!ok && as_root.contains("secret-4f2a"), "{as_root}");
    let (ok, _, as_nobody) = reload_as(&lab, nobody, &sock);
    assert!(!ok, "{as_nobody}");
    assert!(
        as_nobody.contains("web.rules:3") && as_nobody.contains("source lines omitted"),
        "{as_nobody}"
    );
    assert!(!as_nobody.contains("secret-4f2a"), "{as_nobody}");
    d.wait_log("control request uid=65534", 5);
    assert!(passes(&lab), "the running rules went");

    let t0 = Instant::now();
    let (stats, _) = d.stop();
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(stats.get("dropped"), 0, "{}", stats.line);
    e2e::cleanup(&lab);
}
