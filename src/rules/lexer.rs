//! The lexer: one line of rule text into tokens, each with its 1-based column.
//!
//! Words are kept whole (`198.51.100.0/24`, `1000-2000`, `50/s`, `ppp+` are one word each);
//! their meaning is the parser's business. A `#` outside a string starts a comment.

use super::diag::Issue;

/// What a token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    /// Keywords, numbers, addresses, CIDRs, ranges, rates, interface names.
    Word(String),
    /// `$name`
    Var(String),
    /// `"..."`
    Str(String),
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `,`
    Comma,
    /// `=`
    Eq,
}

impl Tok {
    /// The token as error messages name it: `` `allow` ``, `` `$web` ``, `string "x"`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Var(v) => format!("`${v}`"),
            Tok::Str(s) => format!("string \"{s}\""),
            Tok::LBrace => "`{`".into(),
            Tok::RBrace => "`}`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Eq => "`=`".into(),
        }
    }
}

/// A token and where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    /// The token.
    pub tok: Tok,
    /// 1-based character column of its first character.
    pub col: u32,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-' | '+')
}

/// The 1-based column of the character at 0-based `index`.
pub(crate) fn col_of(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

/// Split one line (without its terminator) into tokens; the first bad character is an error.
pub(crate) fn lex(line: &str) -> Result<Vec<Token>, Issue> {
    let chars: Vec<char> = line.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = col_of(i);
        let (tok, next) = match c {
            '#' => break,
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '{' => (Tok::LBrace, i + 1),
            '}' => (Tok::RBrace, i + 1),
            ',' => (Tok::Comma, i + 1),
            '=' => (Tok::Eq, i + 1),
            '"' => string(&chars, i)?,
            '$' => var(&chars, i)?,
            c if is_word_char(c) => {
                let end = (i..chars.len())
                    .find(|&j| !is_word_char(chars[j]))
                    .unwrap_or(chars.len());
                (Tok::Word(chars[i..end].iter().collect()), end)
            }
            other => {
                return Err(Issue::error(col, format!("unexpected character `{other}`")));
            }
        };
        toks.push(Token { tok, col });
        i = next;
    }
    Ok(toks)
}

/// The string starting with the `"` at `start`: `\"` and `\\` are escapes, and it must close
/// on the same line. Returns the token and the index just past the closing quote.
fn string(chars: &[char], start: usize) -> Result<(Tok, usize), Issue> {
    let mut s = String::new();
    let mut j = start + 1;
    while j < chars.len() {
        match chars[j] {
            '"' => return Ok((Tok::Str(s), j + 1)),
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
    Err(Issue::error(col_of(start), "unterminated string")
        .hint(Some("close the string with `\"` on the same line".into())))
}

/// The set name after the `$` at `start`. Returns the token and the index just past it.
fn var(chars: &[char], start: usize) -> Result<(Tok, usize), Issue> {
    let end = (start + 1..chars.len())
        .find(|&j| !(chars[j].is_ascii_alphanumeric() || matches!(chars[j], '_' | '-')))
        .unwrap_or(chars.len());
    if end == start + 1 {
        return Err(Issue::error(col_of(start), "expected a set name after `$`"));
    }
    Ok((Tok::Var(chars[start + 1..end].iter().collect()), end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(line: &str) -> Vec<(Tok, u32)> {
        lex(line)
            .unwrap_or_else(|e| panic!("{line}: {e:?}"))
            .into_iter()
            .map(|t| (t.tok, t.col))
            .collect()
    }

    fn word(w: &str) -> Tok {
        Tok::Word(w.into())
    }

    #[test]
    fn tokens_carry_their_columns() {
        assert_eq!(
            toks("set $web={ 10.0.0.0/8,ppp+ } # c"),
            vec![
                (word("set"), 1),
                (Tok::Var("web".into()), 5),
                (Tok::Eq, 9),
                (Tok::LBrace, 10),
                (word("10.0.0.0/8"), 12),
                (Tok::Comma, 22),
                (word("ppp+"), 23),
                (Tok::RBrace, 28),
            ]
        );
        assert_eq!(toks("  # only a comment"), vec![]);
    }

    #[test]
    fn strings_keep_escapes_and_hashes() {
        assert_eq!(
            toks(r#"label "a \"b\" \\ # c" x"#),
            vec![
                (word("label"), 1),
                (Tok::Str(r#"a "b" \ # c"#.into()), 7),
                (word("x"), 24),
            ]
        );
        let e = lex("label \"open").err();
        assert_eq!(
            e.map(|e| (e.col, e.message)),
            Some((7, "unterminated string".into()))
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(
            toks("label \"é\" log"),
            vec![
                (word("label"), 1),
                (Tok::Str("é".into()), 7),
                (word("log"), 11)
            ]
        );
    }
}
