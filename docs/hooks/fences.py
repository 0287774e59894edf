"""MkDocs hook: two spellings that GitHub reads one way and Python-Markdown another, made to read the same.

- A shell block's tag for the tests (```sh manual, ```sh server+haproxy: see tests/test_scaling_docs.py) is
  dropped, since Python-Markdown takes a fence with a second word for text.
- In a table row, `a \\| b` in a code span (GitHub's way to keep a pipe in a cell) loses its backslash, since
  Python-Markdown already keeps code spans whole and would show it.
"""

import re

TAGGED_FENCE = re.compile(r"^(```+)([\w-]+)[ \t]+[\w+]+[ \t]*$", re.M)
TABLE_ROW = re.compile(r"^\|.*\|[ \t]*$", re.M)
CODE_SPAN = re.compile(r"`[^`\n]+`")


def _unescape_pipes(row):
    return CODE_SPAN.sub(lambda span: span.group(0).replace("\\|", "|"), row.group(0))


def on_page_markdown(markdown, **kwargs):
    """The page with plain ```sh fences and plain pipes in the code spans of its tables."""
    return TABLE_ROW.sub(_unescape_pipes, TAGGED_FENCE.sub(r"\1\2", markdown))
