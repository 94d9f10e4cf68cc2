//! The Debian package: built by scripts/package (lintian without errors), installed with
//! `dpkg -i`, reinstalled over an edited conffile, removed with `dpkg -r` inside a lab gateway
//! whose statewall rules the removal must clean up, then purged. Root; changes the host's
//! package database for the duration of the test (a guard purges the package on failure).
#![cfg(feature = "e2e")]

// Not every helper of the shared harness is used here.
#[allow(dead_code)]
mod e2e;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::Lab;

/// Purges the package whatever happens.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "statewall"]).output();
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn package_builds_installs_keeps_conffiles_and_removes_its_rules() {
    e2e::require(&["dpkg", "lintian", "systemd-analyze", "cargo"]);
    let lab = Lab::up();
    let out = run(Command::new(e2e::root().join("scripts/package")).env("PACKAGE_LINTIAN", "1"));
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
    let _purge = Purge;

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
}
