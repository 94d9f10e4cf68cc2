//! A rule: `ACTION` then clauses in any order, each at most once; the checks that need the
//! whole rule (`port` needs TCP or UDP, `type` needs ICMP) run once the line is read.

use ipnet::IpNet;
use std::net::IpAddr;

use super::values::{icmp_type, parse_iface, parse_port_range};
use super::{PResult, Parser, CLAUSES};
use crate::proto;
use crate::rules::ast::{Endpoint, RuleAst, Stmt};
use crate::rules::diag::{did_you_mean, Issue};
use crate::rules::lexer::{Tok, Token};
use crate::rules::policy::RuleAction;

/// A rule being read: what its clauses said so far, and the columns of the clauses the
/// whole-rule checks point at.
struct Clauses {
    rule: RuleAst,
    /// Column of the protocol (`tcp`, `proto 47`, `any`), once given.
    proto_col: Option<u32>,
    /// Column of the first `port`.
    port_col: Option<u32>,
    /// `type` names with their columns, and the column of `type`: resolved once the protocol
    /// is known.
    types: Option<(Vec<(String, u32)>, u32)>,
}

/// `` `KW` given twice in one rule``.
fn twice(kw: &str, col: u32) -> Issue {
    Issue::error(col, format!("`{kw}` given twice in one rule"))
}

impl Clauses {
    /// Claim the protocol slot for the clause at `col`.
    fn protocol_at(&mut self, col: u32) -> PResult<()> {
        if self.proto_col.is_some() {
            return Err(Issue::error(col, "protocol given twice in one rule"));
        }
        self.proto_col = Some(col);
        Ok(())
    }

    /// The checks that need the whole rule.
    fn finish(mut self) -> PResult<Stmt> {
        if let Some(c) = self.port_col {
            if !matches!(self.rule.proto, Some(proto::TCP) | Some(proto::UDP)) {
                return Err(
                    Issue::error(c, "`port` needs protocol `tcp` or `udp`").hint(Some(
                        "add `tcp` or `udp` after the action, e.g. `allow tcp to any port 22`"
                            .into(),
                    )),
                );
            }
        }
        if let Some((names, col)) = self.types {
            let v6 = match self.rule.proto {
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
            self.rule.icmp_types = Some(out);
        }
        Ok(Stmt::Rule(Box::new(self.rule)))
    }
}

impl Parser {
    /// The rest of a rule line after its action.
    pub(super) fn rule(&mut self, action: RuleAction) -> PResult<Stmt> {
        let mut c = Clauses {
            rule: RuleAst::new(action),
            proto_col: None,
            port_col: None,
            types: None,
        };
        while let Some(tok) = self.next() {
            match tok.tok {
                Tok::Word(kw) => self.clause(&mut c, &kw, tok.col)?,
                other => return Err(not_a_clause(&other, tok.col)),
            }
        }
        c.finish()
    }

    /// One clause, starting with the word `kw` at `col`.
    fn clause(&mut self, c: &mut Clauses, kw: &str, col: u32) -> PResult<()> {
        match kw {
            "in" | "out" => self.iface_clause(c, kw, col),
            "from" | "to" => self.endpoint_clause(c, kw, col),
            "port" => Err(
                Issue::error(col, "`port` must follow `from ADDRS` or `to ADDRS`")
                    .hint(Some("write `to any port 22`".into())),
            ),
            "proto" => self.proto_clause(c, col),
            "type" => {
                if c.types.is_some() {
                    return Err(twice(kw, col));
                }
                c.types = Some((self.icmp_type_list()?, col));
                Ok(())
            }
            "log" => {
                if c.rule.log {
                    return Err(twice(kw, col));
                }
                c.rule.log = true;
                Ok(())
            }
            "limit" => {
                if c.rule.limit.is_some() {
                    return Err(twice(kw, col));
                }
                c.rule.limit = Some(self.limit()?);
                Ok(())
            }
            "label" => self.label_clause(c, col),
            "any" => c.protocol_at(col),
            word => match proto::number(word) {
                Some(p) => {
                    c.protocol_at(col)?;
                    c.rule.proto = Some(p);
                    Ok(())
                }
                None => Err(unknown_word(word, col)),
            },
        }
    }

    /// `in IFACE` / `out IFACE`
    fn iface_clause(&mut self, c: &mut Clauses, kw: &str, col: u32) -> PResult<()> {
        let slot = if kw == "in" {
            &mut c.rule.in_iface
        } else {
            &mut c.rule.out_iface
        };
        if slot.is_some() {
            return Err(twice(kw, col));
        }
        let (name, name_col) = self.word(&format!("an interface name after `{kw}`"))?;
        *slot = Some(parse_iface(&name, name_col)?);
        Ok(())
    }

    /// `from ADDRS [port PORTS]` / `to ADDRS [port PORTS]`
    fn endpoint_clause(&mut self, c: &mut Clauses, kw: &str, col: u32) -> PResult<()> {
        let taken = if kw == "from" {
            c.rule.from.is_some()
        } else {
            c.rule.to.is_some()
        };
        if taken {
            return Err(twice(kw, col));
        }
        let addrs = self.addrs(kw)?;
        let ports = if self.peek_word() == Some("port") {
            let port_col = self.col();
            self.pos += 1;
            c.port_col.get_or_insert(port_col);
            Some(self.ports()?)
        } else {
            None
        };
        let ep = Some(Endpoint { addrs, ports });
        if kw == "from" {
            c.rule.from = ep;
        } else {
            c.rule.to = ep;
        }
        Ok(())
    }

    /// `proto NAME|NUMBER|any`
    fn proto_clause(&mut self, c: &mut Clauses, col: u32) -> PResult<()> {
        if c.proto_col.is_some() {
            return Err(Issue::error(col, "protocol given twice in one rule"));
        }
        let (w, wc) = self.word("a protocol name or number after `proto`")?;
        c.rule.proto = if w == "any" {
            None
        } else if let Ok(n) = w.parse::<u8>() {
            Some(n)
        } else {
            Some(proto::number(&w).ok_or_else(|| {
                Issue::error(wc, format!("unknown protocol `{w}`")).hint(
                    did_you_mean(&w, proto::names())
                        .or_else(|| Some("use a protocol number 0-255, e.g. `proto 47`".into())),
                )
            })?)
        };
        c.proto_col = Some(col);
        Ok(())
    }

    /// `label "TEXT"`
    fn label_clause(&mut self, c: &mut Clauses, col: u32) -> PResult<()> {
        if c.rule.label.is_some() {
            return Err(twice("label", col));
        }
        match self.next() {
            Some(Token {
                tok: Tok::Str(s), ..
            }) => {
                c.rule.label = Some(s);
                Ok(())
            }
            Some(t) => Err(Issue::error(
                t.col,
                format!(
                    "expected a quoted label after `label`, found {}",
                    t.tok.describe()
                ),
            )
            .hint(Some("write `label \"dmz web\"`".into()))),
            None => Err(Issue::error(
                self.eol,
                "expected a quoted label after `label`",
            )),
        }
    }
}

/// A token other than a word where a clause should start.
fn not_a_clause(tok: &Tok, col: u32) -> Issue {
    let hint = matches!(tok, Tok::Comma | Tok::LBrace | Tok::RBrace | Tok::Var(_)).then(|| {
        "lists go after `from`, `to`, `port` or `type`, like `port { 80, 443 }`".to_owned()
    });
    Issue::error(col, format!("unexpected {} in rule", tok.describe())).hint(hint)
}

/// A word that starts no clause: an address or a port missing its keyword, or a typo.
fn unknown_word(word: &str, col: u32) -> Issue {
    let candidates = CLAUSES.iter().copied().chain(proto::names()).chain(["any"]);
    let hint = did_you_mean(word, candidates);
    let msg = if word.parse::<IpNet>().is_ok() || word.parse::<IpAddr>().is_ok() {
        format!("unexpected address `{word}`: write `from {word}` or `to {word}`")
    } else if parse_port_range(word, col).is_ok() {
        format!(
            "unexpected port `{word}`: several ports are written as a list, like \
             `port {{ 80, 443 }}`"
        )
    } else {
        format!("unknown keyword `{word}` in rule")
    };
    Issue::error(col, msg).hint(hint)
}
