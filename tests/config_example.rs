//! `rules/statewall.toml` shows every key the configuration accepts, each with its true
//! default: the accepted keys are discovered from the configuration itself (an unknown key's
//! error lists the expected ones), so a key added to the code without a line in the example
//! fails this test.

use std::path::{Path, PathBuf};

use statewall::config::Settings;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/statewall.toml")
}

fn temp(name: &str, text: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "statewall-example-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&p, text).expect("write temp config");
    p
}

/// The keys accepted in `section` (dotted; "" = top level), from the error an unknown key gets.
fn accepted_keys(section: &str) -> Vec<String> {
    let text = if section.is_empty() {
        "zz_unknown_key = 1\n".to_string()
    } else {
        format!("[{section}]\nzz_unknown_key = 1\n")
    };
    let p = temp(&section.replace('.', "_"), &text);
    let err = Settings::load_with_env(&p, Some(Default::default()))
        .expect_err("an unknown key must be refused")
        .to_string();
    let _ = std::fs::remove_file(&p);
    let expected = err
        .split_once("expected")
        .map(|(_, rest)| rest.split(" for key ").next().unwrap_or(rest))
        .unwrap_or_else(|| panic!("no list of expected keys in: {err}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Whether `key` names a table: a table accepts `[key]` with an unknown key inside and
/// complains about that key.
fn is_table(section: &str, key: &str) -> bool {
    let dotted = if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
    };
    let p = temp("probe", &format!("[{dotted}]\nzz_unknown_key = 1\n"));
    let err = Settings::load_with_env(&p, Some(Default::default()))
        .map(|_| String::new())
        .unwrap_or_else(|e| e.to_string());
    let _ = std::fs::remove_file(&p);
    err.contains("unknown field `zz_unknown_key`")
}

/// The example's keys per section: `key = ...` lines, commented (`# key = ...`) or not.
fn shown_keys(text: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let l = l.strip_prefix("# ").unwrap_or(l);
        if let Some((key, _)) = l.split_once(" = ") {
            let word = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
            if !key.is_empty() && key.chars().all(word) {
                keys.push((section.clone(), key.to_string()));
            }
        }
    }
    keys
}

#[test]
fn every_accepted_key_is_shown_in_its_section() {
    let text = std::fs::read_to_string(example()).expect("read the example");
    let shown = shown_keys(&text);
    let mut missing = Vec::new();
    let mut pending = vec![String::new()];
    let mut checked = 0;
    while let Some(section) = pending.pop() {
        for key in accepted_keys(&section) {
            if is_table(&section, &key) {
                pending.push(if section.is_empty() {
                    key
                } else {
                    format!("{section}.{key}")
                });
                continue;
            }
            checked += 1;
            if !shown.iter().any(|(s, k)| *s == section && *k == key) {
                missing.push(format!("[{section}] {key}"));
            }
        }
    }
    assert!(checked > 60, "only {checked} keys discovered");
    assert!(
        missing.is_empty(),
        "keys missing from rules/statewall.toml: {missing:?}"
    );
}

#[test]
fn the_shown_values_are_the_defaults() {
    let s = Settings::load_with_env(&example(), Some(Default::default())).expect("valid");
    assert_eq!(s, Settings::default());
}

#[test]
fn commented_keys_are_valid_when_uncommented() {
    let text = std::fs::read_to_string(example()).expect("read the example");
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if shown_keys(rest).len() == 1 => rest.to_string(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let rules = temp("rules", "policy allow\n");
    let uncommented = uncommented.replace(
        "rules = \"/etc/statewall/gateway.rules\"",
        &format!("rules = \"{}\"", rules.display()),
    );
    let p = temp("uncommented", &uncommented);
    let loaded = Settings::load_with_env(&p, Some(Default::default()));
    let _ = std::fs::remove_file(&p);
    let _ = std::fs::remove_file(&rules);
    // `[control] group = "statewall"` is only resolved when the socket is bound.
    let s = loaded.expect("the uncommented example is valid");
    assert_eq!(s.control.group.as_deref(), Some("statewall"));
    assert_eq!(s.scan.window, Some(90));
}
