"""Every sub-command says in one line what it does, in ``inbound-audit --help`` and in its own help."""

from __future__ import annotations

import os
import re
import subprocess
import sys

COMMANDS = ["deadletters", "lua", "query", "series", "show-ip", "simulate", "topics", "worker"]


def help_of(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args, "--help"],
        env={**os.environ, "COLUMNS": "80"},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_every_command_has_a_one_line_description_in_the_overview() -> None:
    lines = help_of().splitlines()
    start = lines.index("  COMMAND") + 1
    listed = {}
    for line in lines[start:]:
        if not line.strip():
            break
        match = re.fullmatch(r"    (\S+) {2,}(\S.*)", line)
        assert match, f"not 'name  description' on one line: {line!r}"
        listed[match[1]] = match[2]
    assert sorted(listed) == COMMANDS
    assert all(len(text.split()) >= 3 for text in listed.values()), listed


def test_every_command_has_a_description_in_its_own_help() -> None:
    for command in COMMANDS:
        text = help_of(command)
        paragraphs = text.split("\n\n")
        assert paragraphs[0].startswith(f"usage: inbound-audit {command}")
        assert not paragraphs[1].startswith(("positional arguments:", "options:")), f"{command} has no description"
