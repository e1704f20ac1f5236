"""The README's set-up commands are what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Set-up on a fresh machine", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_gives_exactly_two_setup_commands():
    commands = _setup_commands()
    assert len(commands) == 2
    main_job, tests = commands
    assert main_job.endswith("accelerate launch examples/train.py")
    assert tests.endswith("python -m pytest")
    for command in commands:  # the CPU torch pin comes from the constraints file, never from pyproject
        assert "-c constraints-cpu.txt" in command
    assert (ROOT / "constraints-cpu.txt").read_text().split() == ["torch==2.13.0"]
    assert "torch==" not in (ROOT / "pyproject.toml").read_text()


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert _setup_commands()[1] in ci.splitlines()
