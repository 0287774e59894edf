"""`flask --help` introduces sipup, through the real `flask` command: one line per group, Flask-Limiter's
group hidden; and each group's own help names every command in it (those pages are made in this process by
Flask's own `flask` group, which is what the command runs: starting Python for each would add seconds)."""

import os
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner
from flask.cli import FlaskGroup

from sipup import create_app
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


@pytest.fixture
def group_help(tmp_path):
    """The text of `flask GROUP --help` from a fresh `flask` group loading sipup's app, 80 columns wide."""

    def run(group):
        flask = FlaskGroup(name="flask", create_app=lambda: create_app(instance_path=str(tmp_path)), load_dotenv=False)
        env = {"SIPUP_INSTANCE_PATH": str(tmp_path), "SIPUP_SECRET_KEY": "test-secret", "COLUMNS": "80"}
        result = CliRunner(env={**env, "SIPUP_DATABASE_URL": None}).invoke(flask, [group, "--help"], prog_name="flask")
        assert result.exit_code == 0, result.output
        return result.output

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
def test_each_group_help_describes_its_commands(group_help, group):
    text = group_help(group)
    description = text.split("Options:", 1)[0]
    ours = {"db": ["upgrade", "stats", "optimize"]}.get(group) or list(commands_listed(text))
    for name in ours:
        assert f"`{name}`" in description or f"({name})" in description or name in description.split(), (group, name)
    assert not any(line.endswith("...") for line in commands_listed(text).values() if group != "db")
