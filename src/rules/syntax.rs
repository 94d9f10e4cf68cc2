//! Lexer and parser: one line of rule text in, one [`Stmt`] (with columns) or issues out.
//!
//! The parser knows nothing about files, includes or sets; names of sets stay names here and
//! are resolved by the loader. Every value that can be checked on its own (addresses, ports,
//! rates, protocols, ICMP types) is parsed into its final type here, so that a statement can
//! only hold valid values.

use std::net::IpAddr;

use ipnet::IpNet;

use super::diag::{did_you_mean, edit_distance, Severity};
use super::{ProbeMode, RuleAction};
use crate::proto;

/// A problem found on one line, before it is given a file and a line number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Issue {
    pub severity: Severity,
    /// 1-based character column.
    pub col: u32,
    pub message: String,
    pub hint: Option<String>,
}

impl Issue {
    fn error(col: u32, message: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Error,
            col,
            message: message.into(),
            hint: None,
        }
    }

    fn warning(col: u32, message: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Warning,
            ..Issue::error(col, message)
        }
    }

    fn hint(mut self, hint: Option<String>) -> Issue {
        self.hint = hint;
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// Keywords, numbers, addresses, CIDRs, ranges, rates, interface names.
    Word(String),
    /// `$name`
    Var(String),
    /// `"..."`
    Str(String),
    LBrace,
    RBrace,
    Comma,
    Eq,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    col: u32,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-' | '+')
}

fn lex(line: &str) -> Result<Vec<Token>, Issue> {
    let chars: Vec<char> = line.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = col_of(i);
        match c {
            '#' => break,
            c if c.is_whitespace() => i += 1,
            '{' | '}' | ',' | '=' => {
                let tok = match c {
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    ',' => Tok::Comma,
                    _ => Tok::Eq,
                };
                toks.push(Token { tok, col });
                i += 1;
            }
            '"' => {
                let mut s = String::new();
                let mut j = i + 1;
                let mut closed = false;
                while j < chars.len() {
                    match chars[j] {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' if j + 1 < chars.len() && matches!(chars[j + 1], '"' | '\\') => {
                            s.push(chars[j + 1]);
                            j += 2;
                        }
                        ch => {
                            s.push(ch);
                            j += 1;
                        }
                    }
                }
                if !closed {
                    return Err(Issue::error(col, "unterminated string")
                        .hint(Some("close the string with `\"` on the same line".into())));
                }
                toks.push(Token {
                    tok: Tok::Str(s),
                    col,
                });
                i = j + 1;
            }
            '$' => {
                let mut j = i + 1;
                while j < chars.len()
                    && (chars[j].is_ascii_alphanumeric() || matches!(chars[j], '_' | '-'))
                {
                    j += 1;
                }
                if j == i + 1 {
                    return Err(Issue::error(col, "expected a set name after `$`"));
                }
                toks.push(Token {
                    tok: Tok::Var(chars[i + 1..j].iter().collect()),
                    col,
                });
                i = j;
            }
            c if is_word_char(c) => {
                let mut j = i;
                while j < chars.len() && is_word_char(chars[j]) {
                    j += 1;
                }
                toks.push(Token {
                    tok: Tok::Word(chars[i..j].iter().collect()),
                    col,
                });
                i = j;
            }
            other => {
                return Err(Issue::error(col, format!("unexpected character `{other}`")));
            }
        }
    }
    Ok(toks)
}

fn col_of(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------------------------
// Syntax tree

/// One statement of the language.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Stmt {
    /// `policy ACTION`
    Policy { action: RuleAction },
    /// `probes rst|drop`
    Probes { mode: ProbeMode },
    /// `set $name = ADDRS`; `col` is the column of `$name`.
    Set {
        name: String,
        col: u32,
        addrs: AddrExpr,
    },
    /// `include "path"`
    Include { path: String, col: u32 },
    /// `ACTION ...`
    Rule(Box<RuleAst>),
}

/// An address expression, sets still unresolved.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AddrExpr {
    Any,
    Net(IpNet),
    Set { name: String, col: u32 },
    List(Vec<AddrExpr>),
}

/// An inclusive port range.
pub(crate) type PortRange = (u16, u16);

/// `from ADDRS [port PORTS]` or `to ...`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Endpoint {
    pub addrs: AddrExpr,
    pub ports: Option<Vec<PortRange>>,
}

/// An interface name, optionally ending in the `+` wildcard.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct IfaceAst {
    pub name: String,
    pub wildcard: bool,
}

/// `limit N/UNIT [burst B]`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LimitAst {
    /// Events per `per_nanos`.
    pub count: u32,
    pub per_nanos: u64,
    pub burst: u32,
}

/// A rule as written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RuleAst {
    pub action: RuleAction,
    pub in_iface: Option<IfaceAst>,
    pub out_iface: Option<IfaceAst>,
    /// IP protocol number, `None` for `any`.
    pub proto: Option<u8>,
    pub from: Option<Endpoint>,
    pub to: Option<Endpoint>,
    /// ICMP/ICMPv6 types (numbers for the rule's protocol).
    pub icmp_types: Option<Vec<u8>>,
    pub log: bool,
    pub limit: Option<LimitAst>,
    pub label: Option<String>,
}

/// The result of parsing one line.
#[derive(Debug, Default)]
pub(crate) struct ParsedLine {
    /// `None` for blank and comment lines and for lines with errors.
    pub stmt: Option<Stmt>,
    pub issues: Vec<Issue>,
}

// ---------------------------------------------------------------------------------------------
// Keyword tables

const STATEMENTS: [&str; 7] = [
    "allow", "drop", "reject", "policy", "probes", "set", "include",
];
const CLAUSES: [&str; 10] = [
    "in", "out", "from", "to", "proto", "type", "log", "limit", "label", "port",
];

/// ICMP type names: (name, ICMPv4 type, ICMPv6 type).
pub(crate) const ICMP_TYPES: [(&str, Option<u8>, Option<u8>); 16] = [
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

// ---------------------------------------------------------------------------------------------
// Parser

/// Parse one line (without its terminator).
pub(crate) fn parse_line(line: &str) -> ParsedLine {
    let toks = match lex(line) {
        Ok(t) => t,
        Err(issue) => {
            return ParsedLine {
                stmt: None,
                issues: vec![issue],
            }
        }
    };
    if toks.is_empty() {
        return ParsedLine::default();
    }
    let eol = col_of(line.chars().count());
    let mut p = Parser {
        toks,
        pos: 0,
        eol,
        warnings: Vec::new(),
    };
    let result = p.statement();
    let mut issues = p.warnings;
    match result {
        Ok(stmt) => ParsedLine {
            stmt: Some(stmt),
            issues,
        },
        Err(e) => {
            issues.push(e);
            ParsedLine { stmt: None, issues }
        }
    }
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    /// Column just past the end of the line, for "missing X" errors.
    eol: u32,
    warnings: Vec<Issue>,
}

type PResult<T> = Result<T, Issue>;

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Word(w) => format!("`{w}`"),
        Tok::Var(v) => format!("`${v}`"),
        Tok::Str(s) => format!("string \"{s}\""),
        Tok::LBrace => "`{`".into(),
        Tok::RBrace => "`}`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Eq => "`=`".into(),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    /// Column of the next token, or end of line.
    fn col(&self) -> u32 {
        self.peek().map_or(self.eol, |t| t.col)
    }

    fn peek_word(&self) -> Option<&str> {
        match self.peek() {
            Some(Token {
                tok: Tok::Word(w), ..
            }) => Some(w.as_str()),
            _ => None,
        }
    }

    /// The next token must be a word; `what` names what was expected, for the error.
    fn word(&mut self, what: &str) -> PResult<(String, u32)> {
        match self.next() {
            Some(Token {
                tok: Tok::Word(w),
                col,
            }) => Ok((w, col)),
            Some(t) => Err(Issue::error(
                t.col,
                format!("expected {what}, found {}", describe(&t.tok)),
            )),
            None => Err(Issue::error(self.eol, format!("expected {what}"))),
        }
    }

    fn end(&mut self) -> PResult<()> {
        match self.next() {
            None => Ok(()),
            Some(t) => Err(Issue::error(
                t.col,
                format!("unexpected {} at end of statement", describe(&t.tok)),
            )),
        }
    }

    fn statement(&mut self) -> PResult<Stmt> {
        let (kw, col) =
            self.word("a statement (allow, drop, reject, policy, probes, set, include)")?;
        match kw.as_str() {
            "allow" => self.rule(RuleAction::Allow),
            "drop" => self.rule(RuleAction::Drop),
            "reject" => self.rule(RuleAction::Reject),
            "policy" => {
                let (w, c) = self.word("`drop`, `reject` or `allow` after `policy`")?;
                let action = parse_action(&w).ok_or_else(|| {
                    Issue::error(
                        c,
                        format!("unknown policy `{w}`: expected drop, reject or allow"),
                    )
                    .hint(did_you_mean(&w, ["drop", "reject", "allow"]))
                })?;
                self.end()?;
                Ok(Stmt::Policy { action })
            }
            "probes" => {
                let (w, c) = self.word("`rst` or `drop` after `probes`")?;
                let mode = w.parse::<ProbeMode>().map_err(|_| {
                    Issue::error(c, format!("unknown probe mode `{w}`: expected rst or drop"))
                        .hint(did_you_mean(&w, ["rst", "drop"]))
                })?;
                self.end()?;
                Ok(Stmt::Probes { mode })
            }
            "set" => {
                let (name, name_col) = match self.next() {
                    Some(Token {
                        tok: Tok::Var(v),
                        col,
                    }) => (v, col),
                    Some(Token {
                        tok: Tok::Word(w),
                        col,
                    }) => {
                        return Err(Issue::error(col, "set names start with `$`")
                            .hint(Some(format!("write `set ${w} = {{ ... }}`"))))
                    }
                    Some(t) => {
                        return Err(Issue::error(
                            t.col,
                            format!(
                                "expected a set name like `$web`, found {}",
                                describe(&t.tok)
                            ),
                        ))
                    }
                    None => return Err(Issue::error(self.eol, "expected a set name like `$web`")),
                };
                match self.next() {
                    Some(Token { tok: Tok::Eq, .. }) => {}
                    Some(t) => {
                        return Err(Issue::error(
                            t.col,
                            format!(
                                "expected `=` after the set name, found {}",
                                describe(&t.tok)
                            ),
                        ))
                    }
                    None => return Err(Issue::error(self.eol, "expected `=` after the set name")),
                }
                let addrs = self.addrs("set")?;
                self.end()?;
                Ok(Stmt::Set {
                    name,
                    col: name_col,
                    addrs,
                })
            }
            "include" => match self.next() {
                Some(Token {
                    tok: Tok::Str(path),
                    col,
                }) => {
                    if path.is_empty() {
                        return Err(Issue::error(col, "empty include path"));
                    }
                    self.end()?;
                    Ok(Stmt::Include { path, col })
                }
                Some(t) => Err(Issue::error(
                    t.col,
                    format!(
                        "expected a quoted file name after `include`, found {}",
                        describe(&t.tok)
                    ),
                )
                .hint(Some("write `include \"dmz.rules\"`".into()))),
                None => Err(Issue::error(
                    self.eol,
                    "expected a quoted file name after `include`",
                )),
            },
            other => Err(
                Issue::error(col, format!("unknown keyword `{other}`")).hint(
                    did_you_mean(other, STATEMENTS).or_else(|| {
                        Some(
                        "a line starts with allow, drop, reject, policy, probes, set or include"
                            .into(),
                    )
                    }),
                ),
            ),
        }
    }

    fn rule(&mut self, action: RuleAction) -> PResult<Stmt> {
        let mut r = RuleAst {
            action,
            in_iface: None,
            out_iface: None,
            proto: None,
            from: None,
            to: None,
            icmp_types: None,
            log: false,
            limit: None,
            label: None,
        };
        let mut proto_col: Option<u32> = None;
        let mut port_col: Option<u32> = None;
        let mut types: Option<(Vec<(String, u32)>, u32)> = None;
        while let Some(tok) = self.next() {
            let (kw, col) = match tok.tok {
                Tok::Word(w) => (w, tok.col),
                other => {
                    let hint = matches!(
                        other,
                        Tok::Comma | Tok::LBrace | Tok::RBrace | Tok::Var(_)
                    )
                    .then(|| {
                        "lists go after `from`, `to`, `port` or `type`, like `port { 80, 443 }`"
                            .to_owned()
                    });
                    return Err(Issue::error(
                        tok.col,
                        format!("unexpected {} in rule", describe(&other)),
                    )
                    .hint(hint));
                }
            };
            let dup = || Issue::error(col, format!("`{kw}` given twice in one rule"));
            match kw.as_str() {
                "in" | "out" => {
                    let slot = if kw == "in" {
                        &mut r.in_iface
                    } else {
                        &mut r.out_iface
                    };
                    if slot.is_some() {
                        return Err(dup());
                    }
                    let (name, c) = self.word(&format!("an interface name after `{kw}`"))?;
                    *slot = Some(parse_iface(&name, c)?);
                }
                "from" | "to" => {
                    let taken = if kw == "from" {
                        r.from.is_some()
                    } else {
                        r.to.is_some()
                    };
                    if taken {
                        return Err(dup());
                    }
                    let addrs = self.addrs(&kw)?;
                    let ports = if self.peek_word() == Some("port") {
                        let c = self.col();
                        self.pos += 1;
                        port_col.get_or_insert(c);
                        Some(self.ports()?)
                    } else {
                        None
                    };
                    let ep = Some(Endpoint { addrs, ports });
                    if kw == "from" {
                        r.from = ep;
                    } else {
                        r.to = ep;
                    }
                }
                "port" => {
                    return Err(
                        Issue::error(col, "`port` must follow `from ADDRS` or `to ADDRS`")
                            .hint(Some("write `to any port 22`".into())),
                    )
                }
                "proto" => {
                    if proto_col.is_some() {
                        return Err(Issue::error(col, "protocol given twice in one rule"));
                    }
                    let (w, c) = self.word("a protocol name or number after `proto`")?;
                    r.proto = if w == "any" {
                        None
                    } else if let Ok(n) = w.parse::<u8>() {
                        Some(n)
                    } else {
                        Some(proto::number(&w).ok_or_else(|| {
                            Issue::error(c, format!("unknown protocol `{w}`")).hint(
                                did_you_mean(&w, proto::names()).or_else(|| {
                                    Some("use a protocol number 0-255, e.g. `proto 47`".into())
                                }),
                            )
                        })?)
                    };
                    proto_col = Some(col);
                }
                "type" => {
                    if types.is_some() {
                        return Err(dup());
                    }
                    types = Some((self.icmp_type_list()?, col));
                }
                "log" => {
                    if r.log {
                        return Err(dup());
                    }
                    r.log = true;
                }
                "limit" => {
                    if r.limit.is_some() {
                        return Err(dup());
                    }
                    r.limit = Some(self.limit()?);
                }
                "label" => {
                    if r.label.is_some() {
                        return Err(dup());
                    }
                    match self.next() {
                        Some(Token {
                            tok: Tok::Str(s), ..
                        }) => r.label = Some(s),
                        Some(t) => {
                            return Err(Issue::error(
                                t.col,
                                format!(
                                    "expected a quoted label after `label`, found {}",
                                    describe(&t.tok)
                                ),
                            )
                            .hint(Some("write `label \"dmz web\"`".into())))
                        }
                        None => {
                            return Err(Issue::error(
                                self.eol,
                                "expected a quoted label after `label`",
                            ))
                        }
                    }
                }
                "any" => {
                    if proto_col.is_some() {
                        return Err(Issue::error(col, "protocol given twice in one rule"));
                    }
                    proto_col = Some(col);
                }
                word => {
                    if let Some(p) = proto::number(word) {
                        if proto_col.is_some() {
                            return Err(Issue::error(col, "protocol given twice in one rule"));
                        }
                        r.proto = Some(p);
                        proto_col = Some(col);
                    } else {
                        let candidates =
                            CLAUSES.iter().copied().chain(proto::names()).chain(["any"]);
                        let hint = did_you_mean(word, candidates);
                        let msg = if word.parse::<IpNet>().is_ok() || word.parse::<IpAddr>().is_ok()
                        {
                            format!(
                                "unexpected address `{word}`: write `from {word}` or `to {word}`"
                            )
                        } else if parse_port_range(word, col).is_ok() {
                            format!("unexpected port `{word}`: several ports are written as a list, like `port {{ 80, 443 }}`")
                        } else {
                            format!("unknown keyword `{word}` in rule")
                        };
                        return Err(Issue::error(col, msg).hint(hint));
                    }
                }
            }
        }
        // Checks that need the whole rule.
        if let Some(c) = port_col {
            if !matches!(r.proto, Some(6) | Some(17)) {
                return Err(
                    Issue::error(c, "`port` needs protocol `tcp` or `udp`").hint(Some(
                        "add `tcp` or `udp` after the action, e.g. `allow tcp to any port 22`"
                            .into(),
                    )),
                );
            }
        }
        if let Some((names, col)) = types {
            let v6 = match r.proto {
                Some(proto::ICMP) => false,
                Some(proto::ICMPV6) => true,
                _ => {
                    return Err(
                        Issue::error(col, "`type` needs protocol `icmp` or `icmpv6`")
                            .hint(Some("write `allow icmp type echo-request`".into())),
                    )
                }
            };
            let mut out = Vec::with_capacity(names.len());
            for (name, c) in names {
                out.push(icmp_type(&name, c, v6)?);
            }
            out.sort_unstable();
            out.dedup();
            r.icmp_types = Some(out);
        }
        Ok(Stmt::Rule(Box::new(r)))
    }

    /// `ADDRS`: any | CIDR | IP | $set | { list }. `after` names the keyword before, for errors.
    fn addrs(&mut self, after: &str) -> PResult<AddrExpr> {
        let Some(tok) = self.next() else {
            return Err(
                Issue::error(self.eol, format!("missing address after `{after}`")).hint(Some(
                    "an address is `any`, an IP, a CIDR, a `$set` or a `{ list }`".into(),
                )),
            );
        };
        match tok.tok {
            Tok::Word(w) => self.addr_word(&w, tok.col),
            Tok::Var(v) => Ok(AddrExpr::Set {
                name: v,
                col: tok.col,
            }),
            Tok::LBrace => {
                let mut items = Vec::new();
                loop {
                    match self.peek().map(|t| &t.tok) {
                        None => {
                            return Err(Issue::error(tok.col, "unterminated list: missing `}`"))
                        }
                        Some(Tok::RBrace) => {
                            self.pos += 1;
                            break;
                        }
                        Some(Tok::Comma) => self.pos += 1,
                        Some(_) => items.push(self.addrs(after)?),
                    }
                }
                if items.is_empty() {
                    return Err(Issue::error(tok.col, "empty address list"));
                }
                Ok(AddrExpr::List(items))
            }
            other => Err(Issue::error(
                tok.col,
                format!(
                    "expected an address after `{after}`, found {}",
                    describe(&other)
                ),
            )
            .hint(Some(
                "an address is `any`, an IP, a CIDR, a `$set` or a `{ list }`".into(),
            ))),
        }
    }

    fn addr_word(&mut self, w: &str, col: u32) -> PResult<AddrExpr> {
        if w == "any" {
            return Ok(AddrExpr::Any);
        }
        if let Some((addr, len)) = w.split_once('/') {
            let ip: IpAddr = addr.parse().map_err(|_| {
                Issue::error(
                    col,
                    format!("bad CIDR `{w}`: `{addr}` is not an IP address"),
                )
            })?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len: u8 = match len.parse::<u8>() {
                Ok(l) if l <= max => l,
                Ok(l) => {
                    return Err(Issue::error(
                        col,
                        format!("bad CIDR `{w}`: prefix length {l} is longer than {max}"),
                    ))
                }
                Err(_) => {
                    return Err(Issue::error(
                        col,
                        format!("bad CIDR `{w}`: prefix length `{len}` is not a number 0-{max}"),
                    ))
                }
            };
            let net =
                IpNet::new(ip, len).map_err(|_| Issue::error(col, format!("bad CIDR `{w}`")))?;
            let trunc = net.trunc();
            if trunc != net {
                self.warnings.push(
                    Issue::warning(col, format!("`{w}` has host bits set; it means `{trunc}`"))
                        .hint(Some(format!(
                            "write `{trunc}` (or `{ip}` for a single host)"
                        ))),
                );
            }
            return Ok(AddrExpr::Net(trunc));
        }
        match w.parse::<IpAddr>() {
            Ok(ip) => Ok(AddrExpr::Net(IpNet::from(ip))),
            Err(_) if CLAUSES.contains(&w) || proto::number(w).is_some() => {
                Err(
                    Issue::error(col, format!("missing address before `{w}`")).hint(Some(
                        "an address is `any`, an IP, a CIDR, a `$set` or a `{ list }`".into(),
                    )),
                )
            }
            Err(_) => {
                let name_like = w.starts_with(|c: char| c.is_ascii_alphabetic())
                    && w.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                let hint = (edit_distance(&w.to_ascii_lowercase(), "any") <= 1)
                    .then(|| "did you mean `any`?".to_owned())
                    .or_else(|| name_like.then(|| format!("sets are written with `$`: `${w}`")));
                Err(Issue::error(col, format!("invalid address `{w}`")).hint(hint))
            }
        }
    }

    /// `PORTS`: N | N-M | { list of N and N-M }.
    fn ports(&mut self) -> PResult<Vec<PortRange>> {
        let what = ListWords {
            item: "a port",
            after: "a port after `port`",
            missing: "missing port after `port`",
            empty: "empty port list",
        };
        self.word_list(&what, |w, col| parse_port_range(&w, col))
    }

    fn icmp_type_list(&mut self) -> PResult<Vec<(String, u32)>> {
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
                                format!("expected {}, found {}", what.item, describe(&t.tok)),
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
                format!("expected {}, found {}", what.after, describe(&t.tok)),
            )),
            None => Err(Issue::error(self.eol, what.missing)),
        }
    }

    /// `limit N/UNIT [burst B]`
    fn limit(&mut self) -> PResult<LimitAst> {
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

fn parse_action(w: &str) -> Option<RuleAction> {
    match w {
        "allow" => Some(RuleAction::Allow),
        "drop" => Some(RuleAction::Drop),
        "reject" => Some(RuleAction::Reject),
        _ => None,
    }
}

fn parse_iface(name: &str, col: u32) -> PResult<IfaceAst> {
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

fn parse_port_range(w: &str, col: u32) -> PResult<PortRange> {
    match w.split_once('-') {
        Some((a, b)) => {
            let lo = parse_port(a, col)?;
            let hi = parse_port(b, col)?;
            if lo > hi {
                return Err(Issue::error(col, format!("reversed port range {lo}-{hi}"))
                    .hint(Some(format!("did you mean `{hi}-{lo}`?"))));
            }
            Ok((lo, hi))
        }
        None => {
            let p = parse_port(w, col)?;
            Ok((p, p))
        }
    }
}

fn icmp_type(name: &str, col: u32, v6: bool) -> PResult<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Stmt {
        let p = parse_line(line);
        assert!(
            p.issues.iter().all(|i| i.severity == Severity::Warning),
            "{line}: {:?}",
            p.issues
        );
        p.stmt.unwrap_or_else(|| panic!("no statement for {line}"))
    }

    fn err(line: &str) -> Issue {
        let p = parse_line(line);
        assert!(p.stmt.is_none(), "{line} parsed");
        p.issues
            .into_iter()
            .find(|i| i.severity == Severity::Error)
            .unwrap_or_else(|| panic!("no error for {line}"))
    }

    fn rule(line: &str) -> RuleAst {
        match ok(line) {
            Stmt::Rule(r) => *r,
            other => panic!("not a rule: {other:?}"),
        }
    }

    #[test]
    fn blank_and_comment_lines() {
        assert!(parse_line("").stmt.is_none());
        assert!(parse_line("   # just a comment").stmt.is_none());
        assert!(parse_line("  \t ").issues.is_empty());
    }

    #[test]
    fn policy_probes_include() {
        assert_eq!(
            ok("policy drop # c"),
            Stmt::Policy {
                action: RuleAction::Drop
            }
        );
        assert_eq!(
            ok("policy allow"),
            Stmt::Policy {
                action: RuleAction::Allow
            }
        );
        assert_eq!(
            ok("probes rst"),
            Stmt::Probes {
                mode: ProbeMode::Rst
            }
        );
        assert_eq!(
            ok("include \"dmz.rules\""),
            Stmt::Include {
                path: "dmz.rules".into(),
                col: 9
            }
        );
        assert_eq!(
            err("policy dorp").hint.as_deref(),
            Some("did you mean `drop`?")
        );
        assert_eq!(
            err("probes").message,
            "expected `rst` or `drop` after `probes`"
        );
        assert_eq!(
            err("policy drop now").message,
            "unexpected `now` at end of statement"
        );
    }

    #[test]
    fn sets_nest_and_mix_families() {
        let s = ok("set $web = { 203.0.113.10, 2001:db8:2::10, $other, { 10.0.0.0/8 } }");
        let Stmt::Set {
            name,
            col: 5,
            addrs: AddrExpr::List(items),
        } = s
        else {
            panic!("{s:?}")
        };
        assert_eq!(name, "web");
        assert_eq!(items.len(), 4);
        assert!(matches!(items[2], AddrExpr::Set { ref name, col: 44 } if name == "other"));
        assert_eq!(
            err("set web = { 1.2.3.4 }").message,
            "set names start with `$`"
        );
        assert_eq!(
            err("set $a { 1.2.3.4 }").message,
            "expected `=` after the set name, found `{`"
        );
    }

    #[test]
    fn full_rule() {
        let r = rule("allow in g0 out ppp+ tcp from $admin port 1024-65535 to 203.0.113.2 port { 80, 443 } log label \"dmz web\" limit 50/s");
        assert_eq!(r.action, RuleAction::Allow);
        assert_eq!(
            r.in_iface,
            Some(IfaceAst {
                name: "g0".into(),
                wildcard: false
            })
        );
        assert_eq!(
            r.out_iface,
            Some(IfaceAst {
                name: "ppp".into(),
                wildcard: true
            })
        );
        assert_eq!(r.proto, Some(6));
        let from = r.from.as_ref().map(|e| e.ports.clone());
        assert_eq!(from, Some(Some(vec![(1024, 65535)])));
        let to = r.to.as_ref().map(|e| (&e.addrs, e.ports.clone()));
        assert_eq!(
            to,
            Some((
                &AddrExpr::Net("203.0.113.2/32".parse().unwrap_or_else(|_| unreachable!())),
                Some(vec![(80, 80), (443, 443)])
            ))
        );
        assert!(r.log);
        assert_eq!(r.label.as_deref(), Some("dmz web"));
        assert_eq!(
            r.limit,
            Some(LimitAst {
                count: 50,
                per_nanos: 1_000_000_000,
                burst: 50
            })
        );
    }

    #[test]
    fn protocols() {
        assert_eq!(rule("allow").proto, None);
        assert_eq!(rule("allow any").proto, None);
        assert_eq!(rule("allow gre").proto, Some(47));
        assert_eq!(rule("allow proto 132").proto, Some(132));
        assert_eq!(rule("allow proto esp").proto, Some(50));
        assert_eq!(rule("allow icmpv6").proto, Some(58));
        assert_eq!(
            err("allow tcp udp").message,
            "protocol given twice in one rule"
        );
        assert_eq!(err("allow proto 256").message, "unknown protocol `256`");
        assert_eq!(
            err("allow tpc").hint.as_deref(),
            Some("did you mean `tcp`?")
        );
    }

    #[test]
    fn icmp_types() {
        assert_eq!(
            rule("allow icmp type { echo-request, 3 }").icmp_types,
            Some(vec![3, 8])
        );
        assert_eq!(
            rule("allow icmpv6 type echo-request").icmp_types,
            Some(vec![128])
        );
        assert_eq!(
            rule("allow icmpv6 type packet-too-big").icmp_types,
            Some(vec![2])
        );
        assert_eq!(
            err("allow icmp type packet-too-big").message,
            "ICMP type `packet-too-big` does not exist for icmp"
        );
        assert_eq!(
            err("allow tcp type 3").message,
            "`type` needs protocol `icmp` or `icmpv6`"
        );
        assert_eq!(
            err("allow icmp type echo-reqest").hint.as_deref(),
            Some("did you mean `echo-request`?")
        );
    }

    #[test]
    fn limits() {
        assert_eq!(
            rule("allow limit 10/m").limit,
            Some(LimitAst {
                count: 10,
                per_nanos: 60_000_000_000,
                burst: 10
            })
        );
        assert_eq!(
            rule("allow limit 10/s burst 3").limit.map(|l| l.burst),
            Some(3)
        );
        assert_eq!(
            err("allow limit 0/s").message,
            "bad rate `0/s`: the rate must be at least 1"
        );
        assert_eq!(
            err("allow limit 5/x").message,
            "bad rate `5/x`: unknown unit `x`, expected s, m, h or d"
        );
        assert_eq!(err("allow limit 5").message, "bad rate `5`: expected N/s");
        assert_eq!(
            err("allow limit").message,
            "expected a rate like `50/s` after `limit`"
        );
        assert_eq!(
            err("allow limit 5/s burst 0").message,
            "bad burst `0`: expected a number at least 1"
        );
    }

    #[test]
    fn address_errors() {
        let e = err("allow from 198.51.100.0/33");
        assert_eq!(
            (e.col, e.message.as_str()),
            (
                12,
                "bad CIDR `198.51.100.0/33`: prefix length 33 is longer than 32"
            )
        );
        assert_eq!(
            err("allow to 300.1.2.3").message,
            "invalid address `300.1.2.3`"
        );
        assert_eq!(
            err("allow tcp to port 22").message,
            "missing address before `port`"
        );
        let e = err("allow tcp to");
        assert_eq!(
            (e.col, e.message.as_str()),
            (13, "missing address after `to`")
        );
        assert_eq!(
            err("allow to lan").hint.as_deref(),
            Some("sets are written with `$`: `$lan`")
        );
        assert_eq!(
            err("allow to ayn").hint.as_deref(),
            Some("did you mean `any`?")
        );
        assert_eq!(
            err("allow to ANY").hint.as_deref(),
            Some("did you mean `any`?")
        );
        assert_eq!(err("allow to 10.0.0.256").hint, None);
        assert_eq!(
            err("allow to { 1.2.3.4").message,
            "unterminated list: missing `}`"
        );
        assert_eq!(err("allow to { }").message, "empty address list");
        assert_eq!(
            err("allow to 2001:db8::/129").message,
            "bad CIDR `2001:db8::/129`: prefix length 129 is longer than 128"
        );
    }

    #[test]
    fn host_bits_warn_and_truncate() {
        let p = parse_line("allow from 198.51.100.7/24");
        assert_eq!(p.issues.len(), 1);
        assert_eq!(p.issues[0].severity, Severity::Warning);
        assert_eq!(
            p.issues[0].message,
            "`198.51.100.7/24` has host bits set; it means `198.51.100.0/24`"
        );
        let Some(Stmt::Rule(r)) = p.stmt else {
            panic!("no rule")
        };
        assert_eq!(
            r.from.map(|e| e.addrs),
            Some(AddrExpr::Net(
                "198.51.100.0/24".parse().unwrap_or_else(|_| unreachable!())
            ))
        );
    }

    #[test]
    fn port_errors() {
        assert_eq!(
            err("allow tcp to any port 70000").message,
            "port 70000 out of range (0-65535)"
        );
        let e = err("allow tcp to any port 90-80");
        assert_eq!(
            (e.message.as_str(), e.hint.as_deref()),
            ("reversed port range 90-80", Some("did you mean `80-90`?"))
        );
        assert_eq!(
            err("allow udp to any port { 80, 443").message,
            "unterminated list: missing `}`"
        );
        assert_eq!(err("allow udp to any port {}").message, "empty port list");
        assert_eq!(
            err("allow to any port 22").message,
            "`port` needs protocol `tcp` or `udp`"
        );
        assert_eq!(err("allow icmp to any port 22").col, 19);
        assert_eq!(
            err("allow tcp port 22").message,
            "`port` must follow `from ADDRS` or `to ADDRS`"
        );
        assert_eq!(
            err("allow tcp to any port http").message,
            "bad port `http`: expected a number 0-65535"
        );
    }

    #[test]
    fn lexer_errors() {
        let e = err("allow label \"open");
        assert_eq!((e.col, e.message.as_str()), (13, "unterminated string"));
        assert_eq!(err("allow ; drop").message, "unexpected character `;`");
        assert_eq!(err("allow to $").message, "expected a set name after `$`");
        assert_eq!(
            rule("allow label \"a \\\"q\\\" # not a comment\"")
                .label
                .as_deref(),
            Some("a \"q\" # not a comment")
        );
    }

    #[test]
    fn unknown_keywords_get_hints() {
        let e = err("alow tcp");
        assert_eq!(
            (e.col, e.message.as_str(), e.hint.as_deref()),
            (1, "unknown keyword `alow`", Some("did you mean `allow`?"))
        );
        assert_eq!(
            err("allow tcp frm any").hint.as_deref(),
            Some("did you mean `from`?")
        );
        assert_eq!(
            err("allow lgo").hint.as_deref(),
            Some("did you mean `log`?")
        );
        assert_eq!(
            err("allow 1.2.3.4").message,
            "unexpected address `1.2.3.4`: write `from 1.2.3.4` or `to 1.2.3.4`"
        );
        assert_eq!(
            err("allow from any from any").message,
            "`from` given twice in one rule"
        );
        assert_eq!(
            err("allow tcp to any port 80 443").message,
            "unexpected port `443`: several ports are written as a list, like `port { 80, 443 }`"
        );
        let e = err("allow tcp to any port 80, 443");
        assert_eq!((e.col, e.message.as_str()), (25, "unexpected `,` in rule"));
        assert!(e.hint.is_some());
    }

    #[test]
    fn interfaces() {
        assert_eq!(
            err("allow in").message,
            "expected an interface name after `in`"
        );
        assert_eq!(err("allow in a+b").message, "bad interface name `a+b`");
        assert_eq!(
            err("allow in abcdefghijklmnopq").message,
            "bad interface name `abcdefghijklmnopq`"
        );
        assert_eq!(
            rule("allow in +").in_iface,
            Some(IfaceAst {
                name: String::new(),
                wildcard: true
            })
        );
    }
}
