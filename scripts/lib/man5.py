#!/usr/bin/python3
"""Man pages in section 5 from the project's own documents (stdlib only).

Usage:
  man5.py rules DOC.md OUT.5        statewall.rules(5) from docs/rules.md (Markdown subset:
                                    headings, paragraphs, lists, code blocks, tables)
  man5.py toml EXAMPLE.toml OUT.5   statewall.toml(5) from rules/statewall.toml: every section,
                                    every key with its default and its comment
"""

import re
import sys

DATE = "2026"


def esc(text):
    """Escapes roff specials and strips Markdown emphasis and code marks."""
    text = text.replace("\\", "\\e")
    text = re.sub(r"\*\*(.+?)\*\*", r"\\fB\1\\fR", text)
    text = re.sub(r"`([^`]+)`", r"\\fB\1\\fR", text)
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1 (\2)", text)
    if text.startswith((".", "'")):
        text = "\\&" + text
    # Anything outside ASCII as a groff Unicode escape (\[u2014]).
    return "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)


def header(name, what):
    return [f'.TH {name.upper()} 5 "{DATE}" statewall "File Formats"', ".SH NAME", f"{name} \\- {what}"]


def rules(md_path):
    out = header("statewall.rules", "the statewall rule language")
    lines = open(md_path, encoding="utf-8").read().splitlines()
    i = 0
    title_done = False
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            out.append(".PP")
            out.append(".nf")
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                out.append(esc(lines[i]) if lines[i] else "")
                i += 1
            out.append(".fi")
        elif line.startswith("# "):
            if not title_done:
                out.append(".SH DESCRIPTION")
                title_done = True
        elif line.startswith("## "):
            out.append(".SH " + esc(line[3:].replace("`", "").replace("**", "").upper()))
        elif line.startswith("### "):
            out.append(".SS " + esc(line[4:].replace("`", "").replace("**", "")))
        elif line.startswith("|"):
            # A table: header row, separator, rows -> one tagged paragraph per row.
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in re.split(r"(?<!\\)\|", lines[i].strip().strip("|"))]
                if not all(re.fullmatch(r":?-+:?", c) for c in cells if c):
                    rows.append([c.replace("\\|", "|") for c in cells])
                i += 1
            for row in rows[1:]:
                out.append(".TP")
                out.append(esc(row[0]))
                out.append(esc(" \u2014 ".join(c for c in row[1:] if c)))
            continue
        elif re.match(r"^\s*[-*] ", line):
            out.append(".IP \\(bu 2")
            out.append(esc(re.sub(r"^\s*[-*] ", "", line)))
        elif line.strip() == "":
            out.append(".PP")
        else:
            out.append(esc(line.strip()))
        i += 1
    out += [".SH SEE ALSO", "statewall(8), statewall.toml(5)"]
    return out


def toml(example_path):
    out = header("statewall.toml", "statewall configuration")
    out += [
        ".SH SYNOPSIS",
        "/etc/statewall/statewall.toml",
        ".SH DESCRIPTION",
        "The configuration of statewall(8), in TOML. Every key is optional and shown below",
        "with its default. Unknown keys are errors. Every key can be overridden from the",
        "environment as \\fBSTATEWALL_\\fISECTION\\fB__\\fIKEY\\fR, e.g.",
        "\\fBSTATEWALL_QUEUE__COUNT=2\\fR.",
    ]
    comment = []
    started = False
    for line in open(example_path, encoding="utf-8").read().splitlines():
        s = line.strip()
        if not started:
            # The file's header comment is the man page's DESCRIPTION above.
            if s.startswith("#") or not s:
                continue
            started = True
        m = re.match(r"^\[(.+)\]$", s)
        key = re.match(r"^(#\s*)?([a-z_]+) = (.*)$", s)
        if m:
            out.append(".SH [" + m.group(1).upper() + "]")
            if comment:
                out.append(esc(" ".join(comment)))
            comment = []
        elif key and (key.group(1) is None or len(key.group(3)) < 60):
            out.append(".TP")
            shown = f"{key.group(2)} = {key.group(3)}"
            out.append("\\fB" + esc(shown).replace("\\fB", "").replace("\\fR", "") + "\\fR")
            if key.group(1):
                out.append("(no default; the line shows an example)")
            if comment:
                out.append(esc(" ".join(comment)))
            comment = []
        elif s.startswith("#"):
            comment.append(s.lstrip("#").strip())
        elif not s:
            if comment:
                out.append(".PP")
                out.append(esc(" ".join(comment)))
            comment = []
    out += [".SH FILES", "/etc/statewall/statewall.toml", ".SH SEE ALSO", "statewall(8), statewall.rules(5)"]
    return out


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("rules", "toml"):
        sys.stderr.write(__doc__)
        return 2
    lines = rules(sys.argv[2]) if sys.argv[1] == "rules" else toml(sys.argv[2])
    # Collapse repeated paragraph marks.
    clean = []
    for l in lines:
        if l == ".PP" and clean and clean[-1] in (".PP", ".TP") or (l == ".PP" and clean and clean[-1].startswith(".SH")):
            continue
        clean.append(l)
    with open(sys.argv[3], "w", encoding="utf-8") as f:
        f.write("\n".join(clean) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
