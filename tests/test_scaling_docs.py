"""Every command in docs/SCALING_QUICKSTART.md and docs/SCALING_GUIDE.md is run here, so the documents cannot rot.

Each document's ```sh blocks run in order, one test per block, in a scratch copy of the project (links to
the code, an instance folder of its own), with `flask` and `python` from this virtualenv. What a block
exports is kept for the blocks after it, and what a block starts in the background is stopped at the end.
The block's tag after `sh` says what it needs:
- none: runs on the embedded default (SQLite in the scratch instance) or on what earlier blocks configured;
- `server`: MariaDB and Redis; runs when SIPUP_TEST_DATABASE_URL and SIPUP_TEST_REDIS_URL are set, with a
  scratch database and a Redis namespace of its own in place of the documented URLs, else is skipped;
- `haproxy`: the `haproxy` program (Debian package `haproxy`); skipped when it is not installed
  (`server+haproxy`: both);
- `manual`: changes the machine (packages, crontab, database users) and is not run; its first comment
  line says why, and the test skips it with that reason.
The documented ports 8080-8083 are replaced by free ones; after a line starting `flask serve ... &` or
`haproxy ... &` the block waits until the port answers, and after `kill %N` until that job has stopped.
"""

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("SCALING_QUICKSTART.md", "SCALING_GUIDE.md")
BLOCK = re.compile(r"^```sh(?:[ \t]+([\w+]+))?[ \t]*\n(.*?)^```", re.M | re.S)
DOC_DATABASE_URL = "mysql+pymysql://sipup:secret@127.0.0.1:3306/sipup"
DOC_REDIS_URL = "redis://127.0.0.1:6379/0"
DOC_PORTS = ("8080", "8081", "8082", "8083")
LINKED = ("sipup", "migrations", "cron", "benchmarks", "wsgi.py", "tasks.py", "requirements.txt")
BACKGROUND = re.compile(r"^(?:\S+=\S+\s+|\S+='[^']*'\s+)*(?:flask serve|haproxy)\b.*--port (\d+)|^haproxy\b.*&\s*$")


def blocks():
    """(document, line number, tag, text) of every ```sh block, in order."""
    found = []
    for name in DOCS:
        text = (ROOT / "docs" / name).read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(pytest.param(name, line, match.group(1) or "", match.group(2), id=f"{name}:{line}"))
    return found


class Project:
    """A scratch copy of the project for one document: links to the code, an instance of its own, the
    environment the blocks leave behind, the processes they started."""

    def __init__(self, folder):
        self.folder = folder
        for name in LINKED:
            (folder / name).symlink_to(ROOT / name)
        (folder / ".venv").symlink_to(sys.prefix)
        (folder / "instance").mkdir()
        self.env_file = folder / "instance" / ".doc-env"
        self.ports = {port: str(free_port()) for port in DOC_PORTS}
        self.groups, self.drops, self.namespaces = [], [], []
        self.substitutions = dict(self.ports)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SIPUP_", "FLASK_"))}
        env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            PYTHONPATH=str(folder),
            SIPUP_INSTANCE_PATH=str(folder / "instance"),
            FLASK_APP="wsgi",
            PYTHONWARNINGS="ignore",
        )
        self.env = env

    def use_servers(self):
        """The test's scratch database and Redis namespace in place of the documented URLs (once)."""
        if DOC_DATABASE_URL in self.substitutions:
            return
        from sipup.database import scratch_database

        url, drop = scratch_database(os.environ["SIPUP_TEST_DATABASE_URL"])
        self.drops.append(drop)
        namespace = f"sipupdocs-{secrets.token_hex(4)}"
        self.namespaces.append(namespace)
        self.env["SIPUP_REDIS_NAMESPACE"] = namespace
        self.substitutions[DOC_DATABASE_URL] = url
        self.substitutions[DOC_REDIS_URL] = os.environ["SIPUP_TEST_REDIS_URL"]

    def script(self, text):
        for documented, used in self.substitutions.items():
            text = re.sub(rf"(?<![\w.]){re.escape(documented)}(?![\w])", used, text)
        lines = ["set -e", f"[ -f {self.env_file} ] && . {self.env_file}", f"cd {self.folder}"]
        for line in text.replace("\\\n", " ").splitlines():
            if re.search(r"[^&]&\s*$", line):  # its output to a log, so the block's own output ends with the block
                line = re.sub(r"&\s*$", f">> {self.folder}/instance/background.log 2>&1 &", line)
            lines.append(line)
            stopped = re.match(r"\s*kill ((?:%\d+\s*)+)$", line)
            if stopped:  # as at a prompt: the next block starts once the servers have let go of their ports
                lines.append(f"wait {stopped.group(1).strip()} 2>/dev/null || true")
            started = BACKGROUND.match(line.strip())
            if started and line.rstrip().endswith("&"):
                port = started.group(1) or self.ports["8080"]
                lines.append(
                    f'python -c "import socket,time\nfor _ in range(600):\n    try:\n'
                    f"        socket.create_connection(('127.0.0.1', {port}), 1).close(); break\n"
                    f'    except OSError: time.sleep(0.1)"'
                )
        lines.append(f"export -p > {self.env_file}")
        return "\n".join(lines) + "\n"

    def run(self, text, timeout=240):
        process = subprocess.Popen(
            ["bash", "-c", self.script(text)],
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.groups.append(process.pid)
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            return 124, output.decode("utf-8", "replace")
        return process.returncode, output.decode("utf-8", "replace")

    def close(self):
        for group in self.groups:  # the servers the blocks left running, group by group
            try:
                os.killpg(group, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for drop in self.drops:
            drop()
        if self.namespaces and os.environ.get("SIPUP_TEST_REDIS_URL"):
            import redis

            from sipup import redisclient

            client = redis.Redis.from_url(os.environ["SIPUP_TEST_REDIS_URL"])
            for namespace in self.namespaces:
                redisclient.delete_namespace(client, namespace)
            client.close()


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    made = {}

    def get(document):
        if document not in made:
            made[document] = Project(tmp_path_factory.mktemp(document.split(".")[0].lower()))
        return made[document]

    yield get
    for project in made.values():
        project.close()


@pytest.mark.parametrize("document, line, tag, text", blocks())
def test_documented_commands_run(projects, document, line, tag, text):
    project = projects(document)
    if tag == "manual":
        reason = next((row.lstrip("# ").strip() for row in text.splitlines() if row.startswith("#")), "")
        assert reason, f"{document}:{line}: a manual block must say in its first comment why it is not run"
        pytest.skip(f"{document}:{line} not run: {reason}")
    tags = set(tag.split("+")) - {""}
    assert tags <= {"server", "haproxy"}, f"{document}:{line}: unknown block tag {tag!r} (server, haproxy or manual)"
    if "haproxy" in tags and not shutil.which("haproxy"):
        pytest.skip(f"{document}:{line} needs HAProxy, which is not installed (Debian: apt-get install haproxy)")
    if "server" in tags:
        if not (os.environ.get("SIPUP_TEST_DATABASE_URL") and os.environ.get("SIPUP_TEST_REDIS_URL")):
            pytest.skip(
                f"{document}:{line} needs MariaDB and Redis: set SIPUP_TEST_DATABASE_URL and SIPUP_TEST_REDIS_URL"
            )
        project.use_servers()
    code, output = project.run(text)
    assert code == 0, f"{document}:{line} failed with exit code {code}:\n{text}\n--- output ---\n{output[-4000:]}"


def test_every_document_has_commands():
    found = {param.values[0] for param in blocks()}
    assert found == set(DOCS)
