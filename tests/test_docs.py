"""The documentation stays true: its `qdistill` command lines parse, its links lead to files."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
import yaml

from qdistill.cluster.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CI_TEST_COMMAND = ('python3 -m venv .venv && . .venv/bin/activate && pip install -q torch==2.13.0 '
                   '&& pip install -q -e ".[dev]" && python -m pytest')
FAST_LANE = 'python -m pytest -m "not slow"'
README_MAX_LINES = 200

FENCE = re.compile(r"^\s*(```|~~~)")
# An inline code span: a run of backticks, then anything up to the same run (CommonMark).
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
# A command: `qdistill` where a command starts (a snippet's start, or after `&& `, `; `, `| `, `-- `
# as in `ray job submit … -- qdistill run …`), then a lower-case word and a space or the end. This
# leaves out `qdistill[export]` (an extra), `qdistill:<run dir>` (a key prefix), `qdistill.actors…`
# (a module), messages that name qdistill mid-sentence, and `qdistill export: verifying …` (the
# start of a message export prints, not a command line).
COMMAND = re.compile(r"(?:^|(?<=&& )|(?<=; )|(?<=\| )|(?<=-- ))qdistill[ \t]+[a-z][a-z-]*(?=\s|$)")
# A synopsis in argparse's notation ([optional], a | b) is written after `usage: `, as argparse
# prints it, and is checked flag by flag: it is not a command line, so it is not parsed whole.
USAGE = re.compile(r"^usage:\s+(qdistill\s.*)$")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^)]*[\"'])?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
OPERATORS = set("();<>|&")


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def snippets(path: Path) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(line, text) of every code-block line (with `\\` continuations and a synopsis's indented
    lines joined) and of every inline code span, and (line, text) of every prose line."""
    code: list[tuple[int, str]] = []
    prose: list[tuple[int, str]] = []
    lines = path.read_text().splitlines()
    in_block = False
    joined: tuple[int, str] | None = None
    for number, line in enumerate(lines, start=1):
        if FENCE.match(line):
            in_block = not in_block
            if joined:
                code.append(joined)
                joined = None
            continue
        if not in_block:
            prose.append((number, line))
            continue
        if joined and (joined[1].endswith("\\") or (joined[1].startswith("usage:") and line[:1].isspace()
                                                    and line.strip())):
            joined = (joined[0], joined[1].rstrip("\\").rstrip() + " " + line.strip())
            continue
        if joined:
            code.append(joined)
        joined = (number, line.strip())
    if joined:
        code.append(joined)
    # Inline spans never cross a blank line or a table row: paragraphs are split at both.
    paragraph: list[tuple[int, str]] = []
    for number, line in [*prose, (0, "")]:
        if not line.strip() or line.lstrip().startswith("|") or (paragraph and paragraph[-1][1].lstrip().startswith("|")):
            if paragraph:
                text = "\n".join(text for _, text in paragraph)
                for match in CODE_SPAN.finditer(text):
                    where = paragraph[0][0] + text.count("\n", 0, match.start())
                    code.append((where, " ".join(match.group(2).split())))
            paragraph = [(number, line)] if line.strip() else []
        else:
            paragraph.append((number, line))
    return code, prose


def command_lines(path: Path) -> list[tuple[int, str]]:
    """Every `qdistill …` command and `usage: qdistill …` synopsis in the page, up to a shell operator
    or a comment, without a leading `$ `."""
    found = []
    for number, text in snippets(path)[0]:
        text = text.removeprefix("$ ")
        if USAGE.match(text):
            found.append((number, text))
            continue
        for match in COMMAND.finditer(text):
            lexer = shlex.shlex(text[match.start():], posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            tokens = []
            for token in lexer:
                if set(token) <= OPERATORS:
                    break
                tokens.append(token)
            found.append((number, shlex.join(tokens)))
    return found


def subcommand_parser(words: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser of `qdistill WORDS…` (e.g. `config show`), and the words that named it."""
    parser, named = build_parser(), []
    for word in words:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers:
            break
        if word not in subparsers[0].choices:
            raise KeyError(f"unknown command {' '.join([*named, word])!r}: expected one of "
                           f"{', '.join(subparsers[0].choices)}")
        parser = subparsers[0].choices[word]
        named.append(word)
    return parser, named


COMMANDS = [(path, number, line) for path in PAGES if path.exists() for number, line in command_lines(path)]


@pytest.mark.parametrize("path,number,line", COMMANDS,
                         ids=[f"{relative(p)}:{n}" for p, n, _ in COMMANDS])
def test_command_line_parses(path, number, line):
    where = f"{relative(path)}:{number}: {line}"
    synopsis = USAGE.match(line)
    if synopsis:
        words = shlex.split(synopsis.group(1).replace("[", " ").replace("]", " ").replace("|", " "))[1:]
        try:
            parser, _ = subcommand_parser([w for w in words if not w.startswith("-")][:2])
        except KeyError as error:
            pytest.fail(f"{where}\n{error.args[0]}")
        known = set(parser._option_string_actions)
        unknown = [flag for flag in re.findall(r"(?<![\w-])--?[a-z][\w-]*", synopsis.group(1)) if flag not in known]
        assert not unknown, f"{where}\nnot options of `qdistill {parser.prog.split(' ', 1)[1]}`: {', '.join(unknown)}"
        return
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(shlex.split(line)[1:])
    except SystemExit as exit_:
        if exit_.code not in (0, None):  # 0: --help
            pytest.fail(f"{where}\n{stderr.getvalue().strip()}")


def test_the_readme_tours_every_command():
    """One example per command in the README (the words after `qdistill`, e.g. `config show`)."""
    toured = set()
    for _, line in command_lines(ROOT / "README.md"):
        words = shlex.split(line.removeprefix("usage: "))[1:]
        toured.add(" ".join(subcommand_parser([w for w in words if not w.startswith("-")][:2])[1]))
    parser, _ = subcommand_parser([])
    commands = set()
    for name, sub in next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices.items():
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        commands |= {f"{name} {n}" for n in nested[0].choices} if nested else {name}
    assert commands <= toured, f"README.md has no example of: {', '.join(sorted(commands - toured))}"


def links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every link, image and link reference outside code."""
    found = []
    for number, line in snippets(path)[1]:
        line = CODE_SPAN.sub("", line)
        found += [(number, target) for target in LINK.findall(line)]
        found += [(number, target) for target in REFERENCE.findall(line)]
    return found


LINKS = [(path, number, target) for path in PAGES if path.exists() for number, target in links(path)
         if not re.match(r"(https?:|mailto:|#)", target)]


@pytest.mark.parametrize("path,number,target", LINKS,
                         ids=[f"{relative(p)}:{n}:{t}" for p, n, t in LINKS])
def test_relative_link_leads_to_a_file(path, number, target):
    file = (path.parent / target.split("#", 1)[0]).resolve()
    assert file.exists(), f"{relative(path)}:{number}: link {target!r} leads nowhere ({file} does not exist)"


def test_readme_is_short_and_holds_the_ci_test_command_verbatim():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: at most {README_MAX_LINES}"
    assert CI_TEST_COMMAND in lines, "README.md lost the CI test command (.ci/run runs it verbatim)"
    assert CI_TEST_COMMAND in (ROOT / ".ci" / "run").read_text().splitlines()
    assert any(FAST_LANE in line for line in lines), f"README.md lost the fast lane: {FAST_LANE}"


def test_mkdocs_nav_lists_every_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    docs = ROOT / config.get("docs_dir", "docs")

    def pages(nav) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, dict):
            return [p for value in nav.values() for p in pages(value)]
        return [p for item in nav for p in pages(item)]

    listed = [p for p in pages(config["nav"]) if not re.match(r"https?:", p)]
    assert not [p for p in listed if not (docs / p).exists()], "mkdocs.yml lists pages that do not exist"
    assert sorted(listed) == sorted(p.name for p in docs.glob("*.md")), "mkdocs.yml's nav and docs/ differ"
