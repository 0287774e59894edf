"""Starting sipup is cheap: `import wsgi` (what `flask queue process` runs every minute, and every server) and
the job module load none of the heavy libraries only some requests and commands need; those are imported where
they are used. Counted in sys.modules of a fresh interpreter, not timed."""

import json
import os
import subprocess
import sys

from tests.servers import ROOT

# Each takes a tenth of a second or more to import: PDFs, e-invoices, workbooks, pictures, new passwords,
# the S3 client, a Prometheus scrape, schema migrations.
HEAVY = ("facturx", "lxml", "pypdf", "reportlab", "openpyxl", "PIL", "zxcvbn", "minio", "prometheus_client", "alembic")
PROBE = """
import json, sys

def heavy():
    return sorted(name for name in sys.modules if name.split(".")[0] in sys.argv[1:])

import wsgi, tasks
started = heavy()
from sipup.spreadsheets import xlsx_bytes
xlsx_bytes(["a"], [["b"]])
print(json.dumps([started, heavy()]))
"""


def test_starting_the_app_imports_no_heavy_library(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIPUP_", "FLASK_"))}
    env.update(SIPUP_INSTANCE_PATH=str(tmp_path), PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *HEAVY], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    started, after_a_workbook = json.loads(result.stdout.strip().splitlines()[-1])
    assert started == []
    assert "openpyxl" in after_a_workbook  # the probe sees a heavy library once something uses it
