"""README.md and docs/ name only commands, flags and environment variables carecall has."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from carecall.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
# docs/contract.md included: the CLI must have every command, flag and setting the
# contract names.
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PACKAGES = ["booking_gate", "signalling", "peer", "carecall"]

# Flags of other programs that the docs quote, each with where it comes from.
FOREIGN_FLAGS = {
    "--build": "docker compose up --build",
    "--ulimit": "docker run --ulimit nofile=...",
    "--nofile": "prlimit --nofile=1024:1024",
}

BENCH = re.compile(r"python3? (-m (bench|tools\.\w+)\b|bench/)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
ENV = re.compile(r"\bCARECALL_[A-Z0-9_]*[A-Z0-9]\b")
# A command starts a line or follows a shell separator, maybe after variables and a path
# (`.venv/bin/carecall serve`, `X=1 carecall peer`); not the ready line the docs quote.
COMMAND = re.compile(r"(?:^|[;&|($`]\s*)(?:\w+=\S*\s+)*(?:[\w.~-]*/)*carecall\s+"
                     r"(?!listening on )([a-z][a-z-]*)")


def subcommands() -> dict[str, set[str]]:
    """Each subcommand of `carecall` and the option strings it accepts."""
    parser = build_parser()
    found: dict[str, set[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = {s for a in sub._actions for s in a.option_strings}
    return found


def code_lines(text: str) -> list[str]:
    """The text of fenced code blocks, line by line, and of inline code spans."""
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            lines.append(line)
        else:
            lines.extend(CODE_SPAN.findall(line))
    return lines


def env_vars_in_code() -> set[str]:
    found: set[str] = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            found.update(ENV.findall(path.read_text()))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_carecall_command_in_the_docs_exists_with_its_flags(doc: Path) -> None:
    """`carecall SUB --flag` in code: SUB is a subcommand and each flag after it is SUB's."""
    commands = subcommands()
    problems = []
    for line in code_lines(doc.read_text()):
        for match in COMMAND.finditer(line):
            name = match.group(1)
            if name not in commands:
                problems.append(f"unknown command 'carecall {name}' in: {line.strip()}")
                continue
            rest = line[match.end():]
            following = COMMAND.search(rest)  # flags up to the next carecall command
            for flag in FLAG.findall(rest[:following.start()] if following else rest):
                if flag not in commands[name] and flag not in FOREIGN_FLAGS:
                    problems.append(f"'carecall {name}' has no {flag}: {line.strip()}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_flag_in_the_docs_belongs_to_some_carecall_command(doc: Path) -> None:
    """A --flag quoted anywhere in the docs is one of carecall's, or a named foreign one."""
    known = set().union(*subcommands().values())
    # The benchmarks and tools/ scripts have flags of their own: lines that run one are
    # theirs to define.
    text = "\n".join(line for line in doc.read_text().splitlines() if not BENCH.search(line))
    unknown = {flag for flag in FLAG.findall(text)
               if flag not in known and flag not in FOREIGN_FLAGS}
    assert not unknown, f"{doc.name} names flags carecall does not have: {sorted(unknown)}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_environment_variable_in_the_docs_is_read_by_the_code(doc: Path) -> None:
    """Each CARECALL_* variable the docs name is read somewhere in carecall's packages."""
    unknown = set(ENV.findall(doc.read_text())) - env_vars_in_code()
    assert not unknown, f"{doc.name} names variables nothing reads: {sorted(unknown)}"


def test_every_environment_variable_the_code_reads_is_in_the_readme() -> None:
    """The README's configuration lists every CARECALL_* variable the code reads."""
    missing = env_vars_in_code() - set(ENV.findall((REPO / "README.md").read_text()))
    assert not missing, f"README.md does not document: {sorted(missing)}"


def test_the_checks_see_a_wrong_flag_and_a_wrong_command() -> None:
    """The extractors find an invented flag, command and variable (the checks can fail)."""
    sample = ("Run `carecall serve --bogus` or\n```\ncarecall teleport --now\n"
              "X=1 .venv/bin/carecall gate && carecall beam\n"
              "carecall: in use by another carecall process\n```\nCARECALL_NOPE")
    lines = code_lines(sample)
    assert lines[:2] == ["carecall serve --bogus", "carecall teleport --now"]
    assert [m.group(1) for line in lines for m in COMMAND.finditer(line)] == [
        "serve", "teleport", "gate", "beam"]
    assert "--bogus" not in subcommands()["serve"]
    assert "teleport" not in subcommands()
    assert ENV.findall(sample) == ["CARECALL_NOPE"]
    assert BENCH.search("`python -m bench.nodes --rooms 5`")
    assert not BENCH.search("carecall serve --rooms 5")
    assert "CARECALL_NOPE" not in env_vars_in_code()
