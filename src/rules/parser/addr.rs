//! Address expressions: `any`, an IP, a CIDR, a `$set`, or a `{ list }` of those (nested).

use std::net::IpAddr;

use ipnet::IpNet;

use super::{PResult, Parser, CLAUSES};
use crate::proto;
use crate::rules::ast::AddrExpr;
use crate::rules::diag::{edit_distance, Issue};
use crate::rules::lexer::Tok;

/// The hint of most address errors.
const ADDRESS_FORMS: &str = "an address is `any`, an IP, a CIDR, a `$set` or a `{ list }`";

impl Parser {
    /// `ADDRS`: any | CIDR | IP | $set | { list }. `after` names the keyword before, for errors.
    pub(super) fn addrs(&mut self, after: &str) -> PResult<AddrExpr> {
        let Some(tok) = self.next() else {
            return Err(
                Issue::error(self.eol, format!("missing address after `{after}`"))
                    .hint(Some(ADDRESS_FORMS.into())),
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
                    other.describe()
                ),
            )
            .hint(Some(ADDRESS_FORMS.into()))),
        }
    }

    /// One word of an address expression: `any`, a CIDR or an IP.
    fn addr_word(&mut self, w: &str, col: u32) -> PResult<AddrExpr> {
        if w == "any" {
            return Ok(AddrExpr::Any);
        }
        if let Some((addr, len)) = w.split_once('/') {
            return self.cidr(w, addr, len, col);
        }
        match w.parse::<IpAddr>() {
            Ok(ip) => Ok(AddrExpr::Net(IpNet::from(ip))),
            Err(_) if CLAUSES.contains(&w) || proto::number(w).is_some() => {
                Err(Issue::error(col, format!("missing address before `{w}`"))
                    .hint(Some(ADDRESS_FORMS.into())))
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

    /// `ADDR/LEN` (the word `w`); host bits set are a warning, and cleared.
    fn cidr(&mut self, w: &str, addr: &str, len: &str, col: u32) -> PResult<AddrExpr> {
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
        let net = IpNet::new(ip, len).map_err(|_| Issue::error(col, format!("bad CIDR `{w}`")))?;
        let trunc = net.trunc();
        if trunc != net {
            self.warnings.push(
                Issue::warning(col, format!("`{w}` has host bits set; it means `{trunc}`")).hint(
                    Some(format!("write `{trunc}` (or `{ip}` for a single host)")),
                ),
            );
        }
        Ok(AddrExpr::Net(trunc))
    }
}
