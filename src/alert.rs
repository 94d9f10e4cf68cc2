//! Event formatting shared by everything that goes to syslog: one line per event, an upper-case
//! tag followed by iptables-LOG-like `KEY=value` pairs (`SRC= DST= PROTO= SPT= DPT=`), so that
//! existing log parsers and fail2ban filters work on statewall's lines too.
//!
//! Values never contain spaces: a value with spaces, `"` or control characters is written in
//! double quotes with `\"` and `\\` escaped, which [`fields`] reads back.

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use crate::proto;

/// Syslog severities (RFC 5424 §6.2.1), used for every event statewall reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// System is unusable.
    Emergency = 0,
    /// Action must be taken immediately.
    Alert = 1,
    /// Critical conditions.
    Critical = 2,
    /// Error conditions.
    Error = 3,
    /// Warning conditions.
    Warning = 4,
    /// Normal but significant condition.
    Notice = 5,
    /// Informational messages.
    Info = 6,
    /// Debug-level messages.
    Debug = 7,
}

impl Severity {
    /// The numeric severity code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// `SRC=a DST=b PROTO=P SPT=s DPT=d` as iptables LOG prints them (ports only for protocols that
/// have them).
pub fn flow_fields(src: IpAddr, dst: IpAddr, proto: u8, sport: u16, dport: u16) -> String {
    let mut line = KvLine::default();
    line.kv("SRC", src)
        .kv("DST", dst)
        .kv("PROTO", proto::LogName(proto));
    if proto::has_ports(proto) {
        line.kv("SPT", sport).kv("DPT", dport);
    }
    line.finish()
}

/// Builder for a `TAG KEY=value KEY=value` line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvLine {
    line: String,
}

impl KvLine {
    /// A line starting with `tag` (e.g. `SCAN`, `BLOCK`).
    pub fn new(tag: &str) -> Self {
        KvLine {
            line: tag.to_owned(),
        }
    }

    /// Appends ` key=value`, quoting the value when it needs it.
    pub fn kv(&mut self, key: &str, value: impl fmt::Display) -> &mut Self {
        if !self.line.is_empty() {
            self.line.push(' ');
        }
        self.line.push_str(key);
        self.line.push('=');
        let start = self.line.len();
        // Writing into a String cannot fail.
        let _ = write!(self.line, "{value}");
        if needs_quotes(&self.line[start..]) {
            let raw = self.line.split_off(start);
            quote_into(&raw, &mut self.line);
        }
        self
    }

    /// Appends pre-formatted `key=value` pairs (e.g. from [`flow_fields`]).
    pub fn raw(&mut self, fields: &str) -> &mut Self {
        if !fields.is_empty() {
            if !self.line.is_empty() {
                self.line.push(' ');
            }
            self.line.push_str(fields);
        }
        self
    }

    /// The finished line.
    pub fn finish(&self) -> String {
        self.line.clone()
    }
}

fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"')
}

fn quote_into(raw: &str, out: &mut String) {
    out.push('"');
    for c in raw.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Splits a line into its `key=value` pairs (unquoting quoted values); words without `=` (the
/// tag) are skipped.
pub fn fields(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        let word_end = rest.find([' ', '=']).unwrap_or(rest.len());
        if rest[word_end..].starts_with('=') {
            let key = rest[..word_end].to_owned();
            let (value, after) = read_value(&rest[word_end + 1..]);
            out.push((key, value));
            rest = after;
        } else {
            rest = &rest[word_end..];
        }
        rest = rest.trim_start();
    }
    out
}

/// Reads one value (quoted or bare) and returns it with the rest of the line.
fn read_value(s: &str) -> (String, &str) {
    let Some(quoted) = s.strip_prefix('"') else {
        let end = s.find(' ').unwrap_or(s.len());
        return (s[..end].to_owned(), &s[end..]);
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, next)) = chars.next() {
                    value.push(next);
                }
            }
            '"' => return (value, &quoted[i + 1..]),
            c => value.push(c),
        }
    }
    (value, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_fields_like_iptables() {
        let src: IpAddr = "198.51.100.2".parse().unwrap();
        let dst: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            flow_fields(src, dst, 6, 40000, 22),
            "SRC=198.51.100.2 DST=2001:db8::1 PROTO=TCP SPT=40000 DPT=22"
        );
        assert_eq!(
            flow_fields(src, dst, 1, 0, 0),
            "SRC=198.51.100.2 DST=2001:db8::1 PROTO=ICMP"
        );
        assert_eq!(
            flow_fields(src, dst, 47, 0, 0),
            "SRC=198.51.100.2 DST=2001:db8::1 PROTO=47"
        );
    }

    #[test]
    fn values_with_spaces_are_quoted_and_read_back() {
        let mut line = KvLine::new("RULE");
        line.kv("label", "web \"front\" \\ end")
            .kv("n", 3)
            .raw("SRC=1.2.3.4");
        let text = line.finish();
        assert_eq!(text, r#"RULE label="web \"front\" \\ end" n=3 SRC=1.2.3.4"#);
        let parsed = fields(&text);
        assert_eq!(
            parsed,
            vec![
                ("label".into(), "web \"front\" \\ end".into()),
                ("n".into(), "3".into()),
                ("SRC".into(), "1.2.3.4".into())
            ]
        );
    }

    #[test]
    fn control_characters_never_reach_the_line() {
        let mut line = KvLine::new("X");
        line.kv("v", "a\nb");
        assert_eq!(line.finish(), "X v=\"a b\"");
        let mut empty = KvLine::new("X");
        empty.kv("v", "");
        assert_eq!(fields(&empty.finish()), vec![("v".into(), String::new())]);
    }

    #[test]
    fn fields_survive_odd_input() {
        assert!(fields("").is_empty());
        assert_eq!(
            fields("a=\"unterminated"),
            vec![("a".into(), "unterminated".into())]
        );
        assert_eq!(fields("TAG =x"), vec![(String::new(), "x".into())]);
    }
}
