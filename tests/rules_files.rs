//! The shipped rule files load without errors and mean what their comments say; include,
//! cycle and `check` behaviour on real files.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use statewall::rules::{self, check_report, ProbeMode, Query, RuleAction};
use statewall::Timestamp;

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("rules")
        .join(name)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn query<'a>(proto: u8, src: &str, dst: &str, dport: u16, in_iface: &'a str) -> Query<'a> {
    Query {
        src: ip(src),
        dst: ip(dst),
        proto,
        sport: 40000,
        dport,
        icmp_type: None,
        icmp_code: None,
        in_iface: Some(in_iface),
        out_iface: Some(if in_iface == "g0" { "g1" } else { "g0" }),
    }
}

#[test]
fn gateway_rules_pass_check_without_warnings() {
    let (code, out) = check_report(&shipped("gateway.rules"), false);
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("ok (17 rules, 0 warnings)\n"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[test]
fn dmz_rules_pass_check_standalone() {
    let (code, out) = check_report(&shipped("dmz.rules"), false);
    assert_eq!(code, 0, "{out}");
    // Only the note that a standalone dmz.rules means `policy drop`.
    assert!(out.contains("warning: no `policy` line"), "{out}");
    assert!(out.ends_with("ok (4 rules, 1 warning)\n"), "{out}");
}

#[test]
fn gateway_policy_means_what_it_says() {
    let loaded = rules::load(&shipped("gateway.rules")).unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(loaded.files.len(), 2);
    let p = &loaded.policy;
    assert_eq!(p.default_action(), RuleAction::Drop);
    assert_eq!(p.probes(), Some(ProbeMode::Rst));
    assert_eq!(p.source(), Some(shipped("gateway.rules").as_path()));
    let now = Timestamp::from_secs(1);
    let label = |q: &Query<'_>| {
        let o = p.evaluate(q, now);
        (o.action, o.rule.and_then(|r| r.label.clone()))
    };
    let allow = |l: &str| (RuleAction::Allow, Some(l.to_owned()));
    // LAN out.
    assert_eq!(
        label(&query(6, "192.0.2.7", "203.0.113.2", 443, "wan0")),
        (RuleAction::Drop, Some("blocklist".into()))
    );
    assert_eq!(
        label(&query(6, "198.51.100.20", "203.0.113.80", 443, "g0")),
        allow("lan web")
    );
    assert_eq!(
        label(&query(17, "2001:db8:1::20", "2001:db8:ff::53", 53, "g0")),
        allow("lan dns")
    );
    assert_eq!(
        label(&query(17, "198.51.100.20", "203.0.113.99", 123, "g0")),
        allow("lan ntp")
    );
    assert_eq!(
        label(&query(6, "198.51.100.20", "203.0.113.99", 25, "g0")),
        (RuleAction::Drop, None)
    );
    // Inbound to the DMZ web server only.
    assert_eq!(
        label(&query(6, "198.51.100.20", "203.0.113.2", 80, "g0")),
        allow("lan web")
    );
    assert_eq!(
        label(&query(6, "2001:db8:9::1", "2001:db8:2::2", 443, "wan0")),
        allow("dmz web")
    );
    assert_eq!(
        label(&query(6, "2001:db8:9::1", "2001:db8:2::3", 443, "wan0")),
        (RuleAction::Drop, None)
    );
    assert_eq!(
        label(&query(6, "2001:db8:9::1", "2001:db8:2::2", 22, "wan0")),
        (RuleAction::Drop, None)
    );
    // Admin SSH only from the admin net.
    assert_eq!(
        label(&query(6, "198.51.100.5", "203.0.113.2", 22, "g0")),
        allow("admin ssh")
    );
    assert_eq!(
        label(&query(6, "198.51.100.50", "203.0.113.2", 22, "g0")),
        (RuleAction::Drop, None)
    );
    // The DMZ may resolve names but not open other connections.
    assert_eq!(
        label(&query(17, "203.0.113.2", "198.51.100.53", 53, "g1")),
        allow("dmz dns/ntp")
    );
    assert_eq!(
        label(&query(6, "203.0.113.2", "198.51.100.20", 22, "g1")),
        (RuleAction::Drop, Some("dmz egress".into()))
    );
    // Spoofed LAN source from the DMZ side.
    assert_eq!(
        label(&query(6, "198.51.100.20", "203.0.113.2", 80, "g1")),
        (RuleAction::Drop, Some("spoofed lan source".into()))
    );
    // ident is rejected.
    assert_eq!(
        p.evaluate(&query(6, "203.0.113.2", "198.51.100.20", 113, "g1"), now)
            .action,
        RuleAction::Reject
    );
    // Pings: 20 per second, then the default drop.
    let mut ping = query(1, "198.51.100.20", "203.0.113.2", 0, "g0");
    ping.icmp_type = Some(8);
    let allowed = (0..25)
        .filter(|_| p.evaluate(&ping, now).action == RuleAction::Allow)
        .count();
    assert_eq!(allowed, 20);
    let mut ptb = query(58, "2001:db8:2::2", "2001:db8:1::20", 0, "g1");
    ptb.icmp_type = Some(2);
    assert_eq!(label(&ptb).0, RuleAction::Allow);
}

/// A scratch folder under the target directory, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
    }
    fs::write(&p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    p
}

#[test]
fn includes_are_relative_to_the_including_file() {
    let dir = scratch("rules_include_rel");
    let top = write(
        &dir,
        "top.rules",
        "policy drop\ninclude \"sub/a.rules\"\nallow tcp to $a port 22\n",
    );
    write(
        &dir,
        "sub/a.rules",
        "set $a = { 192.0.2.1 }\ninclude \"b.rules\"\n",
    );
    write(&dir, "sub/b.rules", "allow udp to $a port 53\n");
    let loaded = rules::load(&top).unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(loaded.files.len(), 3);
    assert_eq!(loaded.policy.rule_count(), 2);
    let first = loaded
        .policy
        .rules()
        .next()
        .map(|r| (r.file.to_string(), r.line));
    assert_eq!(
        first,
        Some((dir.join("sub/b.rules").display().to_string(), 1))
    );
}

#[test]
fn include_cycle_is_an_error() {
    let dir = scratch("rules_include_cycle");
    let top = write(&dir, "a.rules", "policy drop\ninclude \"b.rules\"\n");
    write(&dir, "b.rules", "include \"a.rules\"\n");
    let diags = rules::load(&top).err().unwrap_or_default();
    let a = top.display().to_string();
    let b = dir.join("b.rules").display().to_string();
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(
        diags[0].to_string(),
        format!("{b}:1:9: error: include cycle: {a} -> {b} -> {a}\ninclude \"a.rules\"\n        ^")
    );
}

#[test]
fn missing_include_and_missing_file() {
    let dir = scratch("rules_include_missing");
    let top = write(
        &dir,
        "a.rules",
        "policy drop\ninclude \"nope.rules\"\nalow\n",
    );
    let diags = rules::load(&top).err().unwrap_or_default();
    let msgs: Vec<_> = diags.iter().map(|d| (d.line, d.message.clone())).collect();
    let nope = dir.join("nope.rules").display().to_string();
    assert_eq!(msgs[0].0, 2);
    assert!(
        msgs[0]
            .1
            .starts_with(&format!("cannot read include file `{nope}`: ")),
        "{msgs:?}"
    );
    assert_eq!(msgs[1], (3, "unknown keyword `alow`".into()));
    let (code, out) = check_report(&dir.join("absent.rules"), false);
    assert_eq!(code, 1);
    assert!(
        out.contains("absent.rules: error: cannot read rule file"),
        "{out}"
    );
}

#[test]
fn same_file_included_twice_is_read_once() {
    let dir = scratch("rules_include_twice");
    let top = write(
        &dir,
        "a.rules",
        "policy drop\ninclude \"b.rules\"\ninclude \"b.rules\"\n",
    );
    write(&dir, "b.rules", "set $x = { 192.0.2.1 }\nallow to $x\n");
    let loaded = rules::load(&top).unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(loaded.policy.rule_count(), 1);
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded.warnings[0].message.contains("is already included"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn duplicate_policy_across_includes() {
    let dir = scratch("rules_dup_policy");
    let top = write(&dir, "a.rules", "policy drop\ninclude \"b.rules\"\n");
    write(&dir, "b.rules", "# b\npolicy allow\nprobes rst\n");
    let diags = rules::load(&top).err().unwrap_or_default();
    let errs: Vec<_> = diags.iter().filter(|d| d.is_error()).collect();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].message, "duplicate `policy`");
    assert_eq!(errs[0].line, 2);
    assert_eq!(
        errs[0].hint,
        Some(format!("`policy` is first set at {}:1", top.display()))
    );
}

#[test]
fn check_json_report() {
    let dir = scratch("rules_check_json");
    let bad = write(&dir, "bad.rules", "policy drop\nallow tcp to any port 70000\nallow tcp to any port 22\nallow tcp to any port 22\n");
    let (code, out) = check_report(&bad, true);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["file"], bad.display().to_string());
    assert_eq!(v["ok"], false);
    assert_eq!(v["rules"], 2);
    assert_eq!(
        v["errors"][0]["message"],
        "port 70000 out of range (0-65535)"
    );
    assert_eq!(v["errors"][0]["line"], 2);
    assert_eq!(v["errors"][0]["col"], 23);
    assert_eq!(
        v["warnings"][0]["message"],
        format!("duplicate of the rule at {}:3", bad.display())
    );
    let good = write(
        &dir,
        "good.rules",
        "policy drop\nallow tcp to any port 22\n",
    );
    let (code, out) = check_report(&good, true);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        (v["ok"].as_bool(), v["rules"].as_u64()),
        (Some(true), Some(1))
    );
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(0));
}

#[test]
fn check_text_report() {
    let dir = scratch("rules_check_text");
    let bad = write(
        &dir,
        "bad.rules",
        "policy drop\nallow tcp to any port 90-80\n",
    );
    let (code, out) = check_report(&bad, false);
    let f = bad.display();
    assert_eq!(code, 1);
    assert_eq!(
        out,
        format!(
            "{f}:2:23: error: reversed port range 90-80\nallow tcp to any port 90-80\n                      ^\n  = help: did you mean `80-90`?\n\n{f}: 1 error, 0 warnings\n"
        )
    );
}
