//! Golden tests: the exact rendering of typical mistakes, as `statewall check` prints them.

use statewall::rules::{load_str, Diagnostic};

/// Load `text` as `t.rules` and compare every diagnostic, rendered and separated by a blank
/// line, with `expected`.
fn golden(text: &str, expected: &str) {
    let diags: Vec<Diagnostic> = match load_str("t.rules", text) {
        Ok(l) => l.warnings,
        Err(d) => d,
    };
    let rendered: Vec<String> = diags.iter().map(ToString::to_string).collect();
    assert_eq!(rendered.join("\n\n"), expected, "for input:\n{text}");
}

#[test]
fn bad_cidr() {
    golden(
        "policy drop\nallow tcp from 198.51.100.0/33 to any port 22",
        r#"t.rules:2:16: error: bad CIDR `198.51.100.0/33`: prefix length 33 is longer than 32
allow tcp from 198.51.100.0/33 to any port 22
               ^"#,
    );
}

#[test]
fn host_bits_set_is_a_warning() {
    golden(
        "policy drop\nallow tcp from 198.51.100.7/24 to any port 22",
        r#"t.rules:2:16: warning: `198.51.100.7/24` has host bits set; it means `198.51.100.0/24`
allow tcp from 198.51.100.7/24 to any port 22
               ^
  = help: write `198.51.100.0/24` (or `198.51.100.7` for a single host)"#,
    );
}

#[test]
fn port_out_of_range() {
    golden(
        "policy drop\nallow tcp to any port 70000",
        r#"t.rules:2:23: error: port 70000 out of range (0-65535)
allow tcp to any port 70000
                      ^"#,
    );
}

#[test]
fn reversed_port_range() {
    golden(
        "policy drop\nallow tcp to any port 90-80",
        r#"t.rules:2:23: error: reversed port range 90-80
allow tcp to any port 90-80
                      ^
  = help: did you mean `80-90`?"#,
    );
}

#[test]
fn unknown_sets() {
    golden(
        "policy drop\nset $web = { 203.0.113.10 }\nallow tcp to $wbe port 80\nallow tcp to $nope port 80",
        r#"t.rules:3:14: error: unknown set `$wbe`
allow tcp to $wbe port 80
             ^
  = help: did you mean `$web`?

t.rules:4:14: error: unknown set `$nope`
allow tcp to $nope port 80
             ^
  = help: define it before use: `set $nope = { ... }`

t.rules:2:5: warning: set `$web` is never used
set $web = { 203.0.113.10 }
    ^"#,
    );
}

#[test]
fn set_defined_twice() {
    golden(
        "policy drop\nset $web = { 203.0.113.10 }\nset $web = { 203.0.113.11 }\nallow to $web",
        r#"t.rules:3:5: error: set `$web` defined twice
set $web = { 203.0.113.11 }
    ^
  = help: `$web` is first defined at t.rules:2"#,
    );
}

#[test]
fn missing_address_after_to() {
    golden(
        "policy drop\nallow tcp from any to",
        r#"t.rules:2:22: error: missing address after `to`
allow tcp from any to
                     ^
  = help: an address is `any`, an IP, a CIDR, a `$set` or a `{ list }`"#,
    );
}

#[test]
fn port_without_tcp_or_udp() {
    golden(
        "policy drop\nallow icmp to any port 22",
        r#"t.rules:2:19: error: `port` needs protocol `tcp` or `udp`
allow icmp to any port 22
                  ^
  = help: add `tcp` or `udp` after the action, e.g. `allow tcp to any port 22`"#,
    );
}

#[test]
fn unterminated_list() {
    golden(
        "policy drop\nallow tcp to any port { 80, 443",
        r#"t.rules:2:23: error: unterminated list: missing `}`
allow tcp to any port { 80, 443
                      ^"#,
    );
}

#[test]
fn empty_list() {
    golden(
        "policy drop\nallow tcp to { }",
        r#"t.rules:2:14: error: empty address list
allow tcp to { }
             ^"#,
    );
}

#[test]
fn unknown_action() {
    golden(
        "policy drop\nalow tcp to any port 22",
        r#"t.rules:2:1: error: unknown keyword `alow`
alow tcp to any port 22
^
  = help: did you mean `allow`?"#,
    );
}

#[test]
fn bad_limits() {
    golden(
        "policy drop\nallow tcp limit 0/s\nallow tcp limit 5/x",
        r#"t.rules:2:17: error: bad rate `0/s`: the rate must be at least 1
allow tcp limit 0/s
                ^
  = help: write `limit N/s` (also /m, /h, /d) with N at least 1

t.rules:3:17: error: bad rate `5/x`: unknown unit `x`, expected s, m, h or d
allow tcp limit 5/x
                ^
  = help: write `limit N/s` (also /m, /h, /d) with N at least 1"#,
    );
}

#[test]
fn unterminated_string() {
    golden(
        "policy drop\nallow tcp label \"web",
        r#"t.rules:2:17: error: unterminated string
allow tcp label "web
                ^
  = help: close the string with `"` on the same line"#,
    );
}

#[test]
fn duplicate_policy() {
    golden(
        "policy drop\npolicy allow",
        r#"t.rules:2:1: error: duplicate `policy`
policy allow
^
  = help: `policy` is first set at t.rules:1"#,
    );
}

#[test]
fn missing_include() {
    golden(
        "policy drop\ninclude \"does-not-exist.rules\"",
        r#"t.rules:2:9: error: cannot read include file `does-not-exist.rules`: No such file or directory (os error 2)
include "does-not-exist.rules"
        ^"#,
    );
}

#[test]
fn unknown_clause() {
    golden(
        "policy drop\nallow tcp frm any",
        r#"t.rules:2:11: error: unknown keyword `frm` in rule
allow tcp frm any
          ^
  = help: did you mean `from`?"#,
    );
}

#[test]
fn unknown_probe_mode() {
    golden(
        "policy drop\nprobes reset",
        r#"t.rules:2:8: error: unknown probe mode `reset`: expected rst or drop
probes reset
       ^
  = help: did you mean `rst`?"#,
    );
}

#[test]
fn shadowed_rule() {
    golden(
        "policy drop\nallow tcp to 203.0.113.0/24\ndrop tcp to 203.0.113.2 port 22",
        r#"t.rules:3:1: warning: rule never matches: the rule at t.rules:2 matches everything it does
drop tcp to 203.0.113.2 port 22
^
  = help: earlier rule: `allow tcp to 203.0.113.0/24`"#,
    );
}
