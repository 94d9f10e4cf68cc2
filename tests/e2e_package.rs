//! The Debian package: built by scripts/package, checked by lintian (no errors; run in the
//! background while the rest of the test goes on), installed with `dpkg -i`, reinstalled over
//! an edited conffile, removed with `dpkg -r` inside a lab gateway whose statewall rules the
//! removal must clean up, then purged. Root; changes the host's package database for the
//! duration of the test (a guard purges the package on failure, and removes the `statewall`
//! user the package created when the host had none before: the package itself keeps it).
#![cfg(feature = "e2e")]

// Not every helper of the shared harness is used here.
#[allow(dead_code)]
mod e2e;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::Lab;

/// Purges the package whatever happens; removes the user and group `statewall` if the test's
/// install created them.
struct Purge {
    remove_user: bool,
}

impl Purge {
    fn now(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "statewall"]).output();
        if std::mem::take(&mut self.remove_user) {
            let _ = Command::new("userdel").arg("statewall").output();
            let _ = Command::new("groupdel").arg("statewall").output();
        }
    }
}

impl Drop for Purge {
    fn drop(&mut self) {
        self.now();
    }
}

/// A background process, killed if the test ends before it is waited for.
struct Background(Option<Child>);

impl Background {
    fn wait(mut self) -> Output {
        self.0
            .take()
            .expect("running")
            .wait_with_output()
            .expect("wait")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn exists(what: &str, name: &str) -> bool {
    Command::new("getent")
        .args([what, name])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn check(cmd: &Command, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    check(cmd, &out)
}

#[test]
fn package_builds_installs_keeps_conffiles_and_removes_its_rules() {
    e2e::require(&[
        "dpkg",
        "lintian",
        "systemd-analyze",
        "cargo",
        "getent",
        "userdel",
    ]);
    let t_start = Instant::now();
    // The package is built (a plain release build: fresh after scripts/test's build step;
    // faster xz, the same files) while the lab comes up.
    let script = e2e::root().join("scripts/package");
    let mut package = Command::new(&script);
    package.env("PACKAGE_LINTIAN", "0").env("PACKAGE_FAST", "1");
    let (lab, built) = std::thread::scope(|s| {
        let build = s.spawn(|| package.output());
        let lab = Lab::up();
        (lab, build.join().expect("package thread"))
    });
    let out = check(&package, &built.expect("run scripts/package"));
    let deb = e2e::root().join(out.lines().last().expect("package path").trim());
    let name = deb
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        name.starts_with("statewall_") && name.ends_with(".deb") && deb.exists(),
        "{name}"
    );
    eprintln!("package built in {:?}", t_start.elapsed());
    let lintian = Background(Some(
        Command::new(&script)
            .arg("lintian")
            .arg(&deb)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lintian"),
    ));
    let mut purge = Purge {
        remove_user: !exists("passwd", "statewall") && !exists("group", "statewall"),
    };

    run(Command::new("dpkg").arg("-i").arg(&deb));
    for f in [
        "/usr/sbin/statewall",
        "/lib/systemd/system/statewall.service",
        "/usr/lib/sysusers.d/statewall.conf",
        "/usr/share/man/man8/statewall.8.gz",
        "/usr/share/man/man5/statewall.toml.5.gz",
        "/usr/share/man/man5/statewall.rules.5.gz",
        "/usr/share/bash-completion/completions/statewall",
        "/etc/statewall/gateway.rules",
    ] {
        assert!(Path::new(f).exists(), "{f} not installed");
    }
    run(Command::new("id").arg("statewall"));
    // The packaged binary is the plain release build: no fault injection (the e2e tests'
    // binary reads FAULT_INJECT_STATEWALL; a package must not).
    let installed = std::fs::read("/usr/sbin/statewall").expect("read the installed binary");
    let needle = b"FAULT_INJECT_STATEWALL";
    assert!(
        !installed.windows(needle.len()).any(|w| w == needle),
        "the package ships the fault-injection build"
    );
    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "statewall"]));
    for f in [
        "/etc/statewall/statewall.toml",
        "/etc/statewall/gateway.rules",
    ] {
        assert!(conffiles.contains(f), "{f} is not a conffile: {conffiles}");
    }
    // The installed unit, its man page references included.
    run(Command::new("systemd-analyze").args(["verify", "/lib/systemd/system/statewall.service"]));
    run(Command::new("statewall").args(["check", "/etc/statewall/gateway.rules"]));

    // A reinstall keeps the admin's edit.
    let config = Path::new("/etc/statewall/statewall.toml");
    let edited = std::fs::read_to_string(config).expect("read") + "# edited by the admin\n";
    std::fs::write(config, &edited).expect("edit");
    run(Command::new("dpkg").arg("-i").arg(&deb));
    assert_eq!(std::fs::read_to_string(config).expect("read"), edited);

    // The installed daemon in the lab's gateway leaves its rules at exit; `dpkg -r` (run in
    // the gateway's namespace, where the rules are) removes them.
    let cfg = lab.tmp.join("statewall.toml");
    std::fs::write(
        &cfg,
        format!(
            "[control]\nsocket = \"{}\"\n",
            lab.tmp.join("control.sock").display()
        ),
    )
    .expect("config");
    let ran = lab.sh(
        "gw",
        20,
        &format!(
            "timeout -s TERM 3 /usr/sbin/statewall run --config {} 2>&1",
            cfg.display()
        ),
    );
    let log = String::from_utf8_lossy(&ran.stdout);
    assert!(
        log.contains("statewall running") && log.contains("left in place"),
        "{log}"
    );
    assert!(lab.gw_rules().contains("-A FORWARD -j STATEWALL"));
    let t0 = Instant::now();
    run(Command::new("ip").args(["netns", "exec", &lab.ns("gw"), "dpkg", "-r", "statewall"]));
    assert!(t0.elapsed() < Duration::from_secs(60));
    assert!(!lab.gw_rules().contains("STATEWALL"), "{}", lab.gw_rules());
    assert!(!Path::new("/usr/sbin/statewall").exists());
    assert!(config.exists(), "conffiles stay until purge");
    run(Command::new("dpkg").args(["--purge", "statewall"]));
    assert!(!config.exists());
    let created_user = purge.remove_user;
    purge.now();
    if created_user {
        assert!(!exists("passwd", "statewall") && !exists("group", "statewall"));
    }

    let cmd = Command::new(&script);
    let out = lintian.wait();
    let text = check(&cmd, &out) + &String::from_utf8_lossy(&out.stderr);
    eprintln!("lintian:\n{text}");
    eprintln!("e2e_package took {:?}", t_start.elapsed());
}
