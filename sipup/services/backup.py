"""Consistent database backups to instance/backups/, keeping the last SIPUP_BACKUP_KEEP, each verified by a restore.

MySQL/MariaDB: `mysqldump --single-transaction` (one consistent snapshot, no locks on InnoDB), gzipped,
restored into one fixed scratch database beside the live one, `<database>_verify` (`sipup_verify`): the
service account needs `GRANT ALL ON sipup_verify.* TO sipup` besides its own database's grant, which
`verification_problem()` checks (`flask db upgrade` and `flask serve` say it in one line). SQLite: the online
backup API, restored into a scratch file. The
restored copy's row counts must match the source's; a table written to during the backup may differ by
what was written meanwhile, so it is compared against the counts before and after the backup.
"""

import glob
import gzip
import os
import shutil
import sqlite3
import subprocess
import tempfile
from contextlib import closing

from flask import current_app
from sqlalchemy import create_engine, func, inspect, select, table, text
from sqlalchemy.exc import DBAPIError

from ..exceptions import DomainError
from ..extensions import db
from ..files import open_private, private_file, private_folder
from ..models import utcnow


class BackupError(RuntimeError):
    """The backup could not be made or did not verify."""


class VerificationNotAllowed(BackupError, DomainError):
    """The service account may not create the scratch database: retrying cannot help, so the job fails at once."""


ACCESS_DENIED = {1044, 1045, 1142, 1227}  # MySQL/MariaDB: to a database, a login, a table, a privilege


def folder():
    return private_folder(os.path.join(current_app.instance_path, "backups"))


def run_backup():
    """Make, verify and rotate one backup; returns a one-line summary."""
    url = db.engine.url
    stamp = f"{utcnow():%Y%m%d-%H%M%S}"
    before = row_counts(db.engine)
    if url.get_backend_name() == "sqlite":
        path = os.path.join(folder(), f"sipup-{stamp}.sqlite3")
        _sqlite_backup(url.database, path)
        restored = _sqlite_restore_counts(path)
    else:
        path = os.path.join(folder(), f"sipup-{stamp}.sql.gz")
        _mysqldump(url, path)
        restored = _mysql_restore_counts(url, path)
    after = row_counts(db.engine)
    _verify(before, after, restored, path)
    removed = rotate(current_app.config["BACKUP_KEEP"])
    rows = sum(restored.values())
    return (
        f"{os.path.basename(path)}: {os.path.getsize(path):,} bytes, {len(restored)} tables, {rows:,} rows "
        f"verified by restore; {removed} old backup(s) removed"
    )


def row_counts(engine):
    """{table: rows} of every table of the database (Alembic's bookkeeping included)."""
    with engine.connect() as conn:
        names = inspect(conn).get_table_names()
        return {name: conn.scalar(select(func.count()).select_from(table(name))) for name in names}


def _verify(before, after, restored, path):
    problems = []
    for name in sorted(set(before) | set(restored)):
        low, high = sorted((before.get(name, 0), after.get(name, 0)))
        got = restored.get(name)
        if got is None:
            problems.append(f"{name} missing")
        elif not low <= got <= high:
            problems.append(f"{name} has {got} rows, expected {low}" + (f" to {high}" if high != low else ""))
    if problems:
        os.replace(path, path + ".bad")  # kept for inspection, never counted as a good backup
        raise BackupError(f"Backup {os.path.basename(path)} did not verify: {'; '.join(problems[:10])}")


def _sqlite_backup(source, path):
    private_file(path)
    with closing(sqlite3.connect(source, timeout=30)) as src, closing(sqlite3.connect(path)) as dest:
        src.backup(dest)


def _sqlite_restore_counts(path):
    with tempfile.TemporaryDirectory() as scratch:
        restored = os.path.join(scratch, "restore.sqlite3")
        with closing(sqlite3.connect(path)) as src, closing(sqlite3.connect(restored)) as dest:
            src.backup(dest)
        engine = create_engine(f"sqlite:///{restored}")
        try:
            return row_counts(engine)
        finally:
            engine.dispose()


def _client_args(url):
    args = ["-h", url.host or "127.0.0.1", "-P", str(url.port or 3306), "-u", url.username or "root"]
    env = dict(os.environ)
    if url.password:
        env["MYSQL_PWD"] = url.password  # not on the command line, where `ps` would show it
    return args, env


def _mysqldump(url, path):
    program = shutil.which("mysqldump") or shutil.which("mariadb-dump")
    if program is None:
        raise BackupError("mysqldump is not installed: install the MySQL/MariaDB client to back up this database.")
    args, env = _client_args(url)
    temporary = path + ".part"
    with tempfile.TemporaryFile() as errors:
        with open_private(temporary, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as out:
            with subprocess.Popen(
                [
                    program,
                    *args,
                    "--single-transaction",
                    "--quick",
                    "--no-tablespaces",
                    "--routines",
                    "--default-character-set=utf8mb4",
                    url.database,
                ],
                stdout=subprocess.PIPE,
                stderr=errors,
                env=env,
            ) as process:
                shutil.copyfileobj(process.stdout, out, 1024 * 1024)
        if process.returncode != 0:
            errors.seek(0)
            os.remove(temporary)
            raise BackupError(f"mysqldump failed: {errors.read().decode(errors='replace').strip()[:300]}")
    os.replace(temporary, path)


def scratch_name(url):
    """The one scratch database a backup of this database is restored into: `sipup` -> `sipup_verify`."""
    return f"{url.database}_verify"


def _fresh_scratch(url, empty=True):
    """Create the scratch database (empty, or as it is if it exists); VerificationNotAllowed naming the grant when
    the account may not."""
    name = scratch_name(url)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            account = conn.scalar(text("SELECT CURRENT_USER()"))
            try:
                if empty:
                    conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
                exists = "" if empty else "IF NOT EXISTS "
                conn.execute(text(f"CREATE DATABASE {exists}`{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
            except DBAPIError as exc:
                if exc.orig is None or not exc.orig.args or exc.orig.args[0] not in ACCESS_DENIED:
                    raise
                user, _, host = account.rpartition("@")
                raise VerificationNotAllowed(
                    f"The backup is verified by a restore into the database {name}, which {account} may not "
                    f"create: as root run GRANT ALL ON {name}.* TO '{user}'@'{host}' (docs/jobs.md: Mail and backups)."
                ) from None
    finally:
        engine.dispose()
    return url.set(database=name)


def verification_problem():
    """One line saying what the backup's verification lacks on this MySQL/MariaDB server, else None (SQLite too)."""
    url = db.engine.url
    if url.get_backend_name() == "sqlite":
        return None
    try:
        # Whether it may be created; processes and hosts starting at once ask together, so only idempotent steps.
        scratch = _fresh_scratch(url, empty=False)
    except VerificationNotAllowed as exc:
        return str(exc)
    _drop(scratch)
    return None


def _drop(scratch):
    # Connected to a database every account can open, not the scratch one (another process may have dropped it).
    engine = create_engine(scratch.set(database="information_schema"))
    try:
        with engine.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{scratch.database}`"))
    finally:
        engine.dispose()


def _mysql_restore_counts(url, path):
    program = shutil.which("mysql") or shutil.which("mariadb")
    if program is None:
        raise BackupError("The mysql client is not installed: it is needed to verify the backup.")
    target = _fresh_scratch(url)
    try:
        args, env = _client_args(target)
        with gzip.open(path, "rb") as dump, tempfile.TemporaryFile() as errors:
            with subprocess.Popen(
                [program, *args, target.database], stdin=subprocess.PIPE, stderr=errors, env=env
            ) as process:
                shutil.copyfileobj(dump, process.stdin, 1024 * 1024)
                process.stdin.close()
            if process.returncode != 0:
                errors.seek(0)
                raise BackupError(
                    f"Restoring the backup failed: {errors.read().decode(errors='replace').strip()[:300]}"
                )
        engine = create_engine(target)
        try:
            return row_counts(engine)
        finally:
            engine.dispose()
    finally:
        _drop(target)


def rotate(keep):
    """Delete all but the newest `keep` backups; returns how many were removed."""
    files = sorted(
        glob.glob(os.path.join(folder(), "sipup-*.sqlite3")) + glob.glob(os.path.join(folder(), "sipup-*.sql.gz")),
        key=os.path.getmtime,
        reverse=True,
    )
    for old in files[keep:]:
        os.remove(old)
    return len(files[keep:])


def list_backups():
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder(), "sipup-*")))
