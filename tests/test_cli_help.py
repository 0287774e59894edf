"""`flask --help` introduces sipup, through the real `flask` command: one line per group, Flask-Limiter's
group hidden, and each group's own help naming every command in it."""

import os
import re
import subprocess
import sys

import pytest

from sipup.cli import ONE_LINERS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def flask_help(tmp_path):
    env = {
        **os.environ,
        "FLASK_APP": "wsgi",
        "SIPUP_INSTANCE_PATH": str(tmp_path),
        "SIPUP_SECRET_KEY": "test-secret",
        "COLUMNS": "80",
    }
    env.pop("SIPUP_DATABASE_URL", None)

    def run(*args):
        result = subprocess.run(
            [sys.executable, "-m", "flask", *args, "--help"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    return run


def commands_listed(text):
    """{name: its line} from the Commands section of a help page."""
    section = text.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    return {m.group(1): m.group(2) for m in re.finditer(r"^  (\S+)\s+(.*)$", section, re.M)}


def test_flask_help_describes_sipup_and_lists_each_group_on_one_line(flask_help):
    text = flask_help()
    listed = commands_listed(text)
    for name, line in ONE_LINERS.items():
        assert listed[name] == line  # whole, on one line: not cut off with "..."
    assert "limiter" not in listed and "limits" in listed
    assert "sipup: B2B ordering for a wholesaler" in text
    assert "flask COMMAND --help" in text
    intro = text.split("Options:", 1)[0]
    assert "sipup: B2B ordering" in intro and "A general utility script for Flask" not in text  # sipup's, first
    assert "run" not in listed and "serve" in listed  # no development server offered beside waitress


@pytest.mark.parametrize("group", ["queue", "db", "cache", "limits", "storage"])
def test_each_group_help_describes_its_commands(flask_help, group):
    text = flask_help(group)
    description = text.split("Options:", 1)[0]
    ours = {"db": ["upgrade", "stats", "optimize"]}.get(group) or list(commands_listed(text))
    for name in ours:
        assert f"`{name}`" in description or f"({name})" in description or name in description.split(), (group, name)
    assert not any(line.endswith("...") for line in commands_listed(text).values() if group != "db")
