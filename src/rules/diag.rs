//! Diagnostics: errors and warnings about a rule file, rendered like a compiler would, the
//! places they point at, and the "did you mean" suggestions they carry.
//!
//! The parser reports an [`Issue`] (a column on the line it was given); the loader knows the
//! file and the line, holds them as a [`Loc`], and turns issues into [`Diagnostic`]s.

use std::fmt;
use std::sync::Arc;

use serde_json::json;

/// How bad a [`Diagnostic`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The file is rejected; `statewall check` exits 1.
    Error,
    /// The file is accepted but probably not what the admin meant.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One error or warning, located at a file, line and column (both 1-based; line 0 means the
/// diagnostic concerns the file as a whole, e.g. it cannot be read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file, as the admin named it (include paths are joined to the including file's folder).
    pub file: String,
    /// 1-based line number, 0 for the whole file.
    pub line: u32,
    /// 1-based column (in characters), 0 for the whole file.
    pub col: u32,
    /// What is wrong, in one line.
    pub message: String,
    /// The offending source line, verbatim (without its line terminator).
    pub source_line: String,
    /// A suggestion, rendered as `  = help: ...`.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// The diagnostic as a JSON object with the keys `severity`, `file`, `line`, `col`,
    /// `message`, `source_line` and `hint` (null when absent).
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "severity": self.severity.to_string(),
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "message": self.message,
            "source_line": self.source_line,
            "hint": self.hint,
        })
    }

    /// Whether this is an error (as opposed to a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// Renders
    ///
    /// ```text
    /// FILE:LINE:COL: error: message
    /// the offending source line
    ///            ^
    ///   = help: did you mean `allow`?
    /// ```
    ///
    /// A whole-file diagnostic (line 0) renders as `FILE: error: message` alone.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}: {}", self.file, self.severity, self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file, self.line, self.col, self.severity, self.message
            )?;
            write!(f, "\n{}\n", self.source_line)?;
            // Keep tabs so that the caret lines up under the same column in a terminal.
            let pad: String = self
                .source_line
                .chars()
                .take(self.col.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let missing = (self.col.saturating_sub(1) as usize).saturating_sub(pad.chars().count());
            write!(f, "{pad}{}^", " ".repeat(missing))?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  = help: {hint}")?;
        }
        Ok(())
    }
}

/// A problem found on one line, before it is given a file and a line number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Issue {
    /// Error or warning.
    pub severity: Severity,
    /// 1-based character column.
    pub col: u32,
    /// What is wrong, in one line.
    pub message: String,
    /// A suggestion, if any.
    pub hint: Option<String>,
}

impl Issue {
    /// An error at `col`.
    pub(crate) fn error(col: u32, message: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Error,
            col,
            message: message.into(),
            hint: None,
        }
    }

    /// A warning at `col`.
    pub(crate) fn warning(col: u32, message: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Warning,
            ..Issue::error(col, message)
        }
    }

    /// The same issue with `hint` (which may be `None`).
    pub(crate) fn hint(mut self, hint: Option<String>) -> Issue {
        self.hint = hint;
        self
    }
}

/// A place in a file, with its line, for diagnostics.
#[derive(Clone, Debug)]
pub(crate) struct Loc {
    /// The file, as the admin named it.
    pub file: Arc<str>,
    /// 1-based line number.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
    /// The whole source line, verbatim.
    pub source_line: String,
}

impl Loc {
    /// A diagnostic at this place.
    pub(crate) fn diag(
        &self,
        severity: Severity,
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        Diagnostic {
            severity,
            file: self.file.to_string(),
            line: self.line,
            col: self.col,
            message,
            source_line: self.source_line.clone(),
            hint,
        }
    }

    /// The parser's `issue` on this place's line, at the issue's column.
    pub(crate) fn issue(&self, issue: Issue) -> Diagnostic {
        self.at(issue.col)
            .diag(issue.severity, issue.message, issue.hint)
    }

    /// The same line, at column `col`.
    pub(crate) fn at(&self, col: u32) -> Loc {
        Loc {
            col,
            ..self.clone()
        }
    }

    /// `FILE:LINE`, for hints pointing elsewhere.
    pub(crate) fn short(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// A diagnostic about `file` as a whole (line and column 0, no source line).
pub(crate) fn whole_file(file: &str, severity: Severity, message: String) -> Diagnostic {
    Diagnostic {
        severity,
        file: file.to_owned(),
        line: 0,
        col: 0,
        message,
        source_line: String::new(),
        hint: None,
    }
}

/// Edit distance between two short words (Levenshtein plus transpositions of adjacent
/// characters, the "optimal string alignment" distance), so `tpc` is one edit from `tcp`.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    let limit = match word.chars().count() {
        0..=2 => 1,
        3..=5 => 2,
        _ => 3,
    };
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `did you mean `x`?` for the closest candidate.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(col: u32, hint: Option<&str>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            file: "a.rules".into(),
            line: 3,
            col,
            message: "unknown keyword `alow`".into(),
            source_line: "alow tcp".into(),
            hint: hint.map(str::to_owned),
        }
    }

    #[test]
    fn renders_caret_under_column() {
        assert_eq!(
            diag(1, Some("did you mean `allow`?")).to_string(),
            "a.rules:3:1: error: unknown keyword `alow`\nalow tcp\n^\n  = help: did you mean `allow`?"
        );
        assert_eq!(
            diag(6, None).to_string(),
            "a.rules:3:6: error: unknown keyword `alow`\nalow tcp\n     ^"
        );
    }

    #[test]
    fn caret_keeps_tabs_and_may_point_past_the_end() {
        let mut d = diag(3, None);
        d.source_line = "\tx".into();
        assert_eq!(d.to_string().lines().nth(2), Some("\t ^"));
        d.col = 5;
        assert_eq!(d.to_string().lines().nth(2), Some("\t   ^"));
    }

    #[test]
    fn whole_file_diagnostic_has_no_source() {
        let mut d = diag(0, None);
        d.line = 0;
        d.message = "cannot read file".into();
        assert_eq!(d.to_string(), "a.rules: error: cannot read file");
    }

    #[test]
    fn json_has_all_fields() {
        let v = diag(2, None).to_json();
        assert_eq!(v["severity"], "error");
        assert_eq!(v["line"], 3);
        assert_eq!(v["col"], 2);
        assert!(v["hint"].is_null());
    }

    #[test]
    fn edit_distance_and_suggestions() {
        assert_eq!(edit_distance("alow", "allow"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("tpc", "tcp"), 1);
        assert_eq!(closest("lgo", ["to", "log"]), Some("log"));
        assert_eq!(closest("alow", ["allow", "drop"]), Some("allow"));
        assert_eq!(closest("Rejct", ["allow", "reject"]), Some("reject"));
        assert_eq!(closest("banana", ["allow", "drop"]), None);
    }
}
