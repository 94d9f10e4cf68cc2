//! The values inside clauses: port and ICMP type lists, rates, interface names.

use super::{PResult, Parser};
use crate::proto::PortRange;
use crate::rules::ast::{IfaceAst, LimitAst};
use crate::rules::diag::{did_you_mean, Issue};
use crate::rules::lexer::{Tok, Token};

/// ICMP type names: (name, ICMPv4 type, ICMPv6 type).
const ICMP_TYPES: [(&str, Option<u8>, Option<u8>); 16] = [
    ("echo-reply", Some(0), Some(129)),
    ("destination-unreachable", Some(3), Some(1)),
    ("unreachable", Some(3), Some(1)),
    ("source-quench", Some(4), None),
    ("redirect", Some(5), Some(137)),
    ("echo-request", Some(8), Some(128)),
    ("router-advertisement", Some(9), Some(134)),
    ("router-solicitation", Some(10), Some(133)),
    ("time-exceeded", Some(11), Some(3)),
    ("parameter-problem", Some(12), Some(4)),
    ("timestamp-request", Some(13), None),
    ("timestamp-reply", Some(14), None),
    ("packet-too-big", None, Some(2)),
    ("neighbor-solicitation", None, Some(135)),
    ("neighbor-advertisement", None, Some(136)),
    ("mld-query", None, Some(130)),
];

/// The wording of errors about a `word_list`.
struct ListWords {
    /// What one item is (`a port`).
    item: &'static str,
    /// What should follow the keyword (`a port after \`port\``).
    after: &'static str,
    /// Message when the line ends after the keyword.
    missing: &'static str,
    /// Message for `{ }`.
    empty: &'static str,
}

impl Parser {
    /// `PORTS`: N | N-M | { list of N and N-M }.
    pub(super) fn ports(&mut self) -> PResult<Vec<PortRange>> {
        let what = ListWords {
            item: "a port",
            after: "a port after `port`",
            missing: "missing port after `port`",
            empty: "empty port list",
        };
        self.word_list(&what, |w, col| parse_port_range(&w, col))
    }

    /// `TYPES`: a name or number, or a list of them; resolved by [`icmp_type`] once the
    /// rule's protocol is known.
    pub(super) fn icmp_type_list(&mut self) -> PResult<Vec<(String, u32)>> {
        let what = ListWords {
            item: "an ICMP type",
            after: "an ICMP type after `type`",
            missing: "missing ICMP type after `type`",
            empty: "empty type list",
        };
        self.word_list(&what, |w, col| Ok((w, col)))
    }

    /// One word, or `{ word, word ... }` (commas optional), each turned into an item by `item`.
    fn word_list<T>(
        &mut self,
        what: &ListWords,
        mut item: impl FnMut(String, u32) -> PResult<T>,
    ) -> PResult<Vec<T>> {
        match self.next() {
            Some(Token {
                tok: Tok::Word(w),
                col,
            }) => Ok(vec![item(w, col)?]),
            Some(Token {
                tok: Tok::LBrace,
                col,
            }) => {
                let mut out = Vec::new();
                loop {
                    match self.next() {
                        None => return Err(Issue::error(col, "unterminated list: missing `}`")),
                        Some(Token {
                            tok: Tok::RBrace, ..
                        }) => break,
                        Some(Token {
                            tok: Tok::Comma, ..
                        }) => {}
                        Some(Token {
                            tok: Tok::Word(w),
                            col: c,
                        }) => out.push(item(w, c)?),
                        Some(t) => {
                            return Err(Issue::error(
                                t.col,
                                format!("expected {}, found {}", what.item, t.tok.describe()),
                            ))
                        }
                    }
                }
                if out.is_empty() {
                    return Err(Issue::error(col, what.empty));
                }
                Ok(out)
            }
            Some(t) => Err(Issue::error(
                t.col,
                format!("expected {}, found {}", what.after, t.tok.describe()),
            )),
            None => Err(Issue::error(self.eol, what.missing)),
        }
    }

    /// `limit N/UNIT [burst B]`
    pub(super) fn limit(&mut self) -> PResult<LimitAst> {
        let (w, col) = self.word("a rate like `50/s` after `limit`")?;
        let bad = |msg: String| {
            Issue::error(col, msg).hint(Some(
                "write `limit N/s` (also /m, /h, /d) with N at least 1".into(),
            ))
        };
        let Some((n, unit)) = w.split_once('/') else {
            return Err(bad(format!("bad rate `{w}`: expected N/s")));
        };
        let count: u32 = n
            .parse()
            .map_err(|_| bad(format!("bad rate `{w}`: `{n}` is not a number")))?;
        if count == 0 {
            return Err(bad(format!("bad rate `{w}`: the rate must be at least 1")));
        }
        let per_nanos: u64 = match unit {
            "s" | "sec" | "second" => 1_000_000_000,
            "m" | "min" | "minute" => 60_000_000_000,
            "h" | "hour" => 3_600_000_000_000,
            "d" | "day" => 86_400_000_000_000,
            other => {
                return Err(bad(format!(
                    "bad rate `{w}`: unknown unit `{other}`, expected s, m, h or d"
                )))
            }
        };
        let mut burst = count;
        if self.peek_word() == Some("burst") {
            self.pos += 1;
            let (b, c) = self.word("a number after `burst`")?;
            burst = match b.parse::<u32>() {
                Ok(v) if v >= 1 => v,
                _ => {
                    return Err(Issue::error(
                        c,
                        format!("bad burst `{b}`: expected a number at least 1"),
                    ))
                }
            };
        }
        Ok(LimitAst {
            count,
            per_nanos,
            burst,
        })
    }
}

/// An interface name (at most 15 characters), optionally ending in the `+` wildcard.
pub(super) fn parse_iface(name: &str, col: u32) -> PResult<IfaceAst> {
    let (base, wildcard) = match name.strip_suffix('+') {
        Some(b) => (b, true),
        None => (name, false),
    };
    let valid = !base.contains('+')
        && !base.contains('/')
        && base.chars().count() <= 15
        && (wildcard || !base.is_empty());
    if !valid {
        return Err(Issue::error(col, format!("bad interface name `{name}`")).hint(Some(
            "an interface name has at most 15 characters, optionally ending in the `+` wildcard"
                .into(),
        )));
    }
    Ok(IfaceAst {
        name: base.to_owned(),
        wildcard,
    })
}

fn parse_port(s: &str, col: u32) -> PResult<u16> {
    match s.parse::<u32>() {
        Ok(n) => u16::try_from(n)
            .map_err(|_| Issue::error(col, format!("port {n} out of range (0-65535)"))),
        Err(_) => Err(Issue::error(
            col,
            format!("bad port `{s}`: expected a number 0-65535"),
        )),
    }
}

/// `N` or `N-M` (the rule language has no `N:M`; iptables' spelling is a bad port here).
pub(super) fn parse_port_range(w: &str, col: u32) -> PResult<PortRange> {
    match w.split_once('-') {
        Some((a, b)) => {
            let lo = parse_port(a, col)?;
            let hi = parse_port(b, col)?;
            PortRange::new(lo, hi).ok_or_else(|| {
                Issue::error(col, format!("reversed port range {lo}-{hi}"))
                    .hint(Some(format!("did you mean `{hi}-{lo}`?")))
            })
        }
        None => parse_port(w, col).map(PortRange::single),
    }
}

/// The ICMP (`v6`: ICMPv6) type named or numbered `name`.
pub(super) fn icmp_type(name: &str, col: u32, v6: bool) -> PResult<u8> {
    if let Ok(n) = name.parse::<u8>() {
        return Ok(n);
    }
    let family = if v6 { "icmpv6" } else { "icmp" };
    match ICMP_TYPES.iter().find(|(n, _, _)| *n == name) {
        Some((_, v4num, v6num)) => {
            let num = if v6 { *v6num } else { *v4num };
            num.ok_or_else(|| {
                Issue::error(
                    col,
                    format!("ICMP type `{name}` does not exist for {family}"),
                )
            })
        }
        None => Err(
            Issue::error(col, format!("unknown ICMP type `{name}`")).hint(
                did_you_mean(name, ICMP_TYPES.iter().map(|(n, _, _)| *n))
                    .or_else(|| Some("use a name like `echo-request` or a number 0-255".into())),
            ),
        ),
    }
}
