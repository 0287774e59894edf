"""The README opens the door and the documentation site holds the rest: every setting sipup reads is in the
settings table, the README keeps the two commands and stays short, and its links lead to the site's pages.
(`.ci/run` builds the site with `mkdocs build --strict`, which checks the links between pages.)"""

import re
from pathlib import Path

from sipup.config import DEFAULTS, ENV_PREFIX, OTHER_VARIABLES

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
RUN = "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && .venv/bin/flask serve"
TEST = "python3 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt && .venv/bin/python -m pytest"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def settings_table():
    """The names in the first cell of each row of docs/settings.md's table."""
    text = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    names = set()
    for row in re.findall(r"^\| *(`SIPUP_[^|]*)\|", text, re.MULTILINE):
        names.update(re.findall(r"`(SIPUP_\w+)`", row))
    return names


def test_every_setting_sipup_reads_has_a_row_in_the_settings_table_and_every_row_is_read():
    read = {f"{ENV_PREFIX}_{name}" for name in (*DEFAULTS, *OTHER_VARIABLES)}
    documented = settings_table()
    assert sorted(read - documented) == [], "settings missing from docs/settings.md"
    assert sorted(documented - read) == [], "docs/settings.md lists settings sipup does not read"


def test_the_readme_keeps_the_two_commands_at_the_top_and_stays_short():
    lines = README.splitlines()
    assert len(lines) <= 200
    assert RUN in "\n".join(lines[:25]) and TEST in "\n".join(lines[:25])


def test_the_readme_links_to_pages_that_exist_and_to_every_page_of_the_site():
    targets = [target for target in LINK.findall(README) if "://" not in target]
    assert [target for target in targets if not (ROOT / target).is_file()] == []
    nav = set(re.findall(r"^\s+- [^\n]*?:\s*(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), re.M))
    assert "settings.md" in nav
    linked = {Path(target).relative_to("docs").as_posix() for target in targets if target.startswith("docs/")}
    assert sorted(nav - {"index.md"} - linked) == [], "pages of the site the README does not point to"
