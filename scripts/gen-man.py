#!/usr/bin/env python3
"""Writes berth's man pages from its own --help: berth(1) and one page per command
(berth-create(1), ...), gzipped, plus berth-ALIAS(1) symlinks for command aliases.

Usage: scripts/gen-man.py BERTH VERSION OUTDIR

The help is CLI11's: a description, "Usage: ...", sections ("Options:", "libvirt driver:")
whose items put the name in the first 30 columns and the description after it (or on
the next lines, indented 30, when the name is longer), then the footer."""
import gzip
import subprocess
import sys
from pathlib import Path

COLUMN = 30


def help_text(berth, *args):
    return subprocess.run([berth, *args, "--help"], check=True, capture_output=True, text=True).stdout


def parse(text):
    """-> (description, usage, [(section, [(name, description)])], footer)"""
    lines = text.rstrip("\n").split("\n")
    description, usage, sections, footer = [], "", [], []
    items = None
    for i, line in enumerate(lines):
        wrapped = i + 1 < len(lines) and lines[i + 1].startswith(" " * COLUMN)  # a long name: description below
        if line.startswith("Usage: "):
            usage = line[len("Usage: "):]
        elif not usage:
            description.append(line)
        elif not line.strip():
            items = None
        elif not line.startswith(" ") and line.endswith(":"):
            items = []
            sections.append((line[:-1], items))
        elif line.startswith(" " * COLUMN) and items:
            name, desc = items[-1]
            items[-1] = (name, (desc + " " + line.strip()).strip())
        elif line.startswith("  ") and items is not None:
            if not wrapped and len(line) > COLUMN and line[COLUMN - 1] == " " and line[COLUMN] != " ":
                items.append((line[:COLUMN].strip(), line[COLUMN:].strip()))
            else:
                items.append((line.strip(), ""))
        else:
            footer.append(line)
    return " ".join(description).strip(), usage, sections, " ".join(footer).strip()


def esc(s):
    """roff-safe text: backslashes, hyphens in options, a leading dot or quote."""
    s = s.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + s if s[:1] in (".", "'") else s


def render_sections(sections, out, level="SH"):
    for title, items in sections:
        title = "Arguments" if title == "Positionals" else title
        out.append(f'.{level} "{esc(title.upper() if level == "SH" else title)}"')
        for name, desc in items:
            out += [".TP", f".B {esc(name)}", esc(desc) if desc else ""]


def page(title, name, summary, usage, sections, footer, version, see_also, extra=()):
    out = [f'.TH "{title.upper()}" 1 "" "berth {version}" "berth manual"',
           ".SH NAME", f"{esc(name)} \\- {esc(summary)}",
           ".SH SYNOPSIS", f".B {esc(usage)}",
           ".SH DESCRIPTION", esc(summary) + "."]
    render_sections(sections, out)
    out += extra
    if footer.startswith("Exit codes: "):
        out += [".SH \"EXIT STATUS\"", esc(footer[len("Exit codes: "):])]
    elif footer:
        out += [".SH NOTES", esc(footer)]
    out += [".SH \"SEE ALSO\"", ", ".join(f"\\fB{esc(p)}\\fR(1)" for p in see_also)]
    return "\n".join(out) + "\n"


def write(outdir, name, text):
    # mtime 0: the same help gives the same bytes.
    with open(outdir / f"{name}.1.gz", "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as z:
        z.write(text.encode())


def main():
    berth, version, outdir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    outdir.mkdir(parents=True, exist_ok=True)
    for old in outdir.glob("*.1*"):
        old.unlink()
    summary, usage, sections, footer = parse(help_text(berth))
    commands = dict(sections).get("Subcommands", [])
    names = [n.split(",")[0].strip() for n, _ in commands]
    write(outdir, "berth", page("berth", "berth", summary, usage,
                                [s for s in sections if s[0] != "Subcommands"], footer, version,
                                [f"berth-{n}" for n in names],
                                [".SH COMMANDS"] + sum(([".TP", f".BR berth\\-{esc(n)} (1)", esc(d)]
                                                        for n, (_, d) in zip(names, commands)), [])))
    for (spelled, _), cmd in zip(commands, names):
        c_summary, c_usage, c_sections, c_footer = parse(help_text(berth, cmd))
        extra = []
        for sub, sub_desc in dict(c_sections).get("Subcommands", []):  # berth cluster ls, join, ...
            s_summary, s_usage, s_sections, _ = parse(help_text(berth, cmd, sub))
            extra += [f'.SH "{esc(cmd.upper() + " " + sub.upper())}"', f".B {esc(s_usage)}", ".PP", esc(s_summary) + "."]
            render_sections(s_sections, extra, level="SS")
        c_sections = [s for s in c_sections if s[0] != "Subcommands"]
        write(outdir, f"berth-{cmd}", page(f"berth-{cmd}", f"berth-{cmd}", c_summary, c_usage, c_sections,
                                          c_footer, version, ["berth"], extra))
        for alias in [a.strip() for a in spelled.split(",")[1:]]:  # ls, list: berth-list(1) is berth-ls(1)
            (outdir / f"berth-{alias}.1.gz").symlink_to(f"berth-{cmd}.1.gz")


if __name__ == "__main__":
    main()
