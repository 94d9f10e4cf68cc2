//! The parser: one line of rule text in, one [`Stmt`] (with columns) or issues out.
//!
//! It knows nothing about files, includes or sets: the loader gives it one line at a time and
//! places its [`Issue`]s in the file. Statements are parsed here; a rule's clauses in
//! [`rule`], address expressions in [`addr`], and the other values (port and ICMP type lists,
//! rates, interface names) in [`values`].

mod addr;
mod rule;
mod values;

use super::ast::Stmt;
use super::diag::{did_you_mean, Issue};
use super::lexer::{col_of, lex, Tok, Token};
use super::policy::RuleAction;
use crate::verdict::ProbeMode;

/// The words a statement starts with.
const STATEMENTS: [&str; 7] = [
    "allow", "drop", "reject", "policy", "probes", "set", "include",
];

/// The keywords of a rule's clauses (protocol names aside).
const CLAUSES: [&str; 10] = [
    "in", "out", "from", "to", "proto", "type", "log", "limit", "label", "port",
];

/// The result of parsing one line.
#[derive(Debug, Default)]
pub(crate) struct ParsedLine {
    /// `None` for blank and comment lines and for lines with errors.
    pub stmt: Option<Stmt>,
    /// Warnings, and the error that stopped the parse, if any (last).
    pub issues: Vec<Issue>,
}

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
    let mut p = Parser {
        toks,
        pos: 0,
        eol: col_of(line.chars().count()),
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

/// A cursor over the tokens of one line, collecting warnings; the first error ends the parse.
struct Parser {
    toks: Vec<Token>,
    pos: usize,
    /// Column just past the end of the line, for "missing X" errors.
    eol: u32,
    warnings: Vec<Issue>,
}

type PResult<T> = Result<T, Issue>;

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
                format!("expected {what}, found {}", t.tok.describe()),
            )),
            None => Err(Issue::error(self.eol, format!("expected {what}"))),
        }
    }

    /// The line must end here.
    fn end(&mut self) -> PResult<()> {
        match self.next() {
            None => Ok(()),
            Some(t) => Err(Issue::error(
                t.col,
                format!("unexpected {} at end of statement", t.tok.describe()),
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
            "policy" => self.policy(),
            "probes" => self.probes(),
            "set" => self.set(),
            "include" => self.include(),
            other => Err(
                Issue::error(col, format!("unknown keyword `{other}`")).hint(
                    did_you_mean(other, STATEMENTS).or_else(|| {
                        Some(
                            "a line starts with allow, drop, reject, policy, probes, set or \
                             include"
                                .into(),
                        )
                    }),
                ),
            ),
        }
    }

    /// `policy drop|reject|allow`
    fn policy(&mut self) -> PResult<Stmt> {
        let (w, c) = self.word("`drop`, `reject` or `allow` after `policy`")?;
        let action = w.parse::<RuleAction>().map_err(|_| {
            Issue::error(
                c,
                format!("unknown policy `{w}`: expected drop, reject or allow"),
            )
            .hint(did_you_mean(&w, ["drop", "reject", "allow"]))
        })?;
        self.end()?;
        Ok(Stmt::Policy { action })
    }

    /// `probes rst|drop`
    fn probes(&mut self) -> PResult<Stmt> {
        let (w, c) = self.word("`rst` or `drop` after `probes`")?;
        let mode = w.parse::<ProbeMode>().map_err(|_| {
            Issue::error(c, format!("unknown probe mode `{w}`: expected rst or drop"))
                .hint(did_you_mean(&w, ["rst", "drop"]))
        })?;
        self.end()?;
        Ok(Stmt::Probes { mode })
    }

    /// `set $name = ADDRS`
    fn set(&mut self) -> PResult<Stmt> {
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
                        t.tok.describe()
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
                        t.tok.describe()
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

    /// `include "path"`
    fn include(&mut self) -> PResult<Stmt> {
        match self.next() {
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
                    t.tok.describe()
                ),
            )
            .hint(Some("write `include \"dmz.rules\"`".into()))),
            None => Err(Issue::error(
                self.eol,
                "expected a quoted file name after `include`",
            )),
        }
    }
}

#[cfg(test)]
mod tests;
