"""The cron and Task Scheduler files: every path the documents name exists, the task files are what Task
Scheduler imports, and the cron wrapper rotates its log."""

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "cron").glob("*.*")),
    *sorted((ROOT / "cron" / "windows").glob("*.xml")),
]
# cron/x, cron\x, C:\sipup\cron\x; a trailing dot or comma ends the sentence, not the name.
CRON_PATH = re.compile(r"(?<![\w/\\.-])(?:[A-Z]:\\sipup\\)?(cron[\\/][\w.*\\/-]*[\w*])")
TASK = "{http://schemas.microsoft.com/windows/2004/02/mit/task}"


def read(path):
    data = path.read_bytes()
    return data.decode("utf-16") if data.startswith(b"\xff\xfe") else data.decode("utf-8")


def named_paths():
    found = []
    for document in DOCUMENTS:
        for match in CRON_PATH.finditer(read(document)):
            found.append(
                pytest.param(match.group(1).replace("\\", "/"), id=f"{document.relative_to(ROOT)}:{match.group(1)}")
            )
    return found


def test_the_documents_name_the_cron_files():
    names = {param.values[0] for param in named_paths()}
    assert {
        "cron/windows/sipup-serve.xml",
        "cron/windows/sipup-queue-worker.xml",
        "cron/crontab",
        "cron/sipup.sh",
        "cron/serve.bat",
        "cron/worker.bat",
    } <= names


@pytest.mark.parametrize("path", named_paths())
def test_every_cron_path_the_documents_name_exists(path):
    assert list(ROOT.glob(path)), f"{path} is named but does not exist"


@pytest.mark.parametrize("xml", sorted((ROOT / "cron" / "windows").glob("*.xml")), ids=lambda p: p.name)
def test_task_scheduler_files_parse_and_run_a_batch_file_of_the_project(xml):
    task = ET.fromstring(xml.read_bytes())  # UTF-16 with its BOM, as Task Scheduler exports them
    command = task.find(f"{TASK}Actions/{TASK}Exec/{TASK}Command").text
    assert command.startswith("C:\\sipup\\cron\\")
    assert (ROOT / command.removeprefix("C:\\sipup\\").replace("\\", "/")).exists()
    if task.find(f"{TASK}Triggers/{TASK}BootTrigger") is not None:  # the long-running ones
        assert task.find(f"{TASK}Settings/{TASK}RestartOnFailure/{TASK}Count") is not None
        assert task.find(f"{TASK}Settings/{TASK}ExecutionTimeLimit").text == "PT0S"


def test_batch_files_have_windows_line_ends():
    for bat in (ROOT / "cron").glob("*.bat"):
        data = bat.read_bytes()
        assert data.count(b"\n") == data.count(b"\r\n"), f"{bat.name} has bare LF line ends"


def test_the_cron_wrapper_rotates_its_log_at_one_megabyte(tmp_path):
    project = tmp_path / "project"
    (project / "cron").mkdir(parents=True)
    (project / "instance").mkdir()
    shutil.copy(ROOT / "cron" / "sipup.sh", project / "cron" / "sipup.sh")
    flask = project / ".venv" / "bin" / "flask"
    flask.parent.mkdir(parents=True)
    flask.write_text('#!/bin/sh\necho "ran: $*"\n')  # stands in for the virtualenv's flask: prints its arguments
    flask.chmod(0o755)
    log = project / "instance" / "cron.log"

    def run():
        subprocess.run(
            [
                "sh",
                str(project / "cron" / "sipup.sh"),
                "--log",
                "instance/cron.log",
                "queue",
                "process",
                "--limit",
                "10",
            ],
            check=True,
            cwd=tmp_path,
        )

    run()
    assert log.read_text() == "ran: queue process --limit 10\n"
    log.write_text("x" * 1_048_577)
    for n in range(1, 6):
        (project / "instance" / f"cron.log.{n}").write_text(f"old {n}")
    run()
    assert log.read_text() == "ran: queue process --limit 10\n"
    assert (project / "instance" / "cron.log.1").stat().st_size == 1_048_577
    assert [(project / "instance" / f"cron.log.{n}").read_text() for n in range(2, 6)] == [
        "old 1",
        "old 2",
        "old 3",
        "old 4",
    ]
    assert not (project / "instance" / "cron.log.6").exists()
    run()  # under the limit: appended
    assert log.read_text().count("ran:") == 2


def test_the_systemd_unit_stops_the_worker_gracefully_with_margin():
    """systemd waits TimeoutStopSec before it kills: the worker's own stop (SIPUP_WORKER_STOP_SECONDS) plus
    queueing the unfinished jobs again (5 s on a busy host) must fit with room to spare."""
    from sipup.config import DEFAULTS

    unit = read(ROOT / "cron" / "sipup-worker.service")
    settings = dict(re.findall(r"^(\w+)=(.*)$", unit, re.MULTILINE))
    assert settings["ExecStart"] == "/opt/sipup/cron/sipup.sh queue worker" and settings["KillSignal"] == "SIGTERM"
    assert int(settings["TimeoutStopSec"]) >= DEFAULTS["WORKER_STOP_SECONDS"] + 20
