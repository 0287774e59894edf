"""Jobs per second through `flask queue process` and through the worker, on Huey's SQLite and Redis storage,
for no-op jobs and for the email job against a local SMTP server.

python -m benchmarks.queue [--jobs 400] [--mails 150]
Redis too when SIPUP_BENCH_REDIS_URL is set (a namespace of its own, deleted afterwards); the jobs table
on MariaDB when SIPUP_BENCH_DATABASE_URL is set, else on SQLite.
"""

import argparse
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import time

from sqlalchemy import func, select

from sipup import create_app
from sipup.database import scratch_database
from sipup.extensions import db
from sipup.jobs import enqueue
from sipup.jobs.worker import build_worker
from sipup.models import Job, Role, User
from tests.servers import LocalSmtp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _app(url, instance, **extra):
    return create_app({"DATABASE_URL": url, "SECRET_KEY": "benchmark", **extra}, instance_path=instance)


def _prepare(app):
    """Schema, a catalog and companies with buyers, and one order whose confirmation is the mail sent."""
    from sipup.cli.db import upgrade_schema
    from sipup.services import seed

    with app.app_context():
        upgrade_schema()
        seed.seed_catalog(50)
        seed.seed_companies(2, "benchmark password")
        seed.seed_orders(5, 1)


def _fill(app, name, args, count):
    """Queue `count` jobs, each committed on its own as a request would; returns seconds."""
    with app.app_context():
        app.extensions["queue"].huey.flush()
        db.session.execute(Job.__table__.delete())
        db.session.commit()
        started = time.perf_counter()
        for _ in range(count):
            enqueue(name, *args)
            db.session.commit()
        return time.perf_counter() - started


def _all_done(app, count):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Job).where(Job.status == "done")) >= count


def bench_direct(app, name, args, count):
    """Baseline: the job's service called in a loop, in one app context each, without any queue."""
    from sipup.jobs.registry import JOBS

    func = JOBS[name].job_function
    started = time.perf_counter()
    for _ in range(count):
        with app.app_context():
            func(*args)
    return count / (time.perf_counter() - started)


def bench_process(app, name, args, count, batch=10):
    """Cron mode in one process: queue.process(batch) repeatedly, as `flask queue process --limit 10` does."""
    _fill(app, name, args, count)
    started = time.perf_counter()
    with app.app_context():
        while not _all_done(app, count):
            app.extensions["queue"].process(batch)
    return count / (time.perf_counter() - started)


def bench_cli(app, env, name, args, count):
    """One real `flask queue process --limit N` command, start-up included."""
    _fill(app, name, args, count)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "flask", "queue", "process", "--limit", str(count)],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - started
    assert _all_done(app, count), "the command left jobs undone"
    return count / elapsed


def bench_worker(app, name, args, count, workers=2):
    """Huey's consumer with sipup's housekeeping, thread workers, from start until every job is done."""
    _fill(app, name, args, count)
    consumer = build_worker(app, workers)
    started = time.perf_counter()
    consumer.start()
    try:
        while not _all_done(app, count):
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        consumer.stop(graceful=True)
        app.extensions["queue"]._huey = None
    return count / elapsed


def run(label, url, instance, queue_settings, jobs, mails):
    smtp = LocalSmtp().start()
    settings = {**queue_settings, "MAIL_URL": smtp.url, "MAIL_FROM": "orders@shop.example"}
    app = _app(url, instance, **settings)
    _prepare(app)
    with app.app_context():
        order_id = db.session.scalar(select(func.min(db.metadata.tables["orders"].c.id)))
        buyer = db.session.scalar(select(User.email).where(User.role == Role.BUYER).limit(1))
    env = {
        **os.environ,
        "SIPUP_INSTANCE_PATH": instance,
        "FLASK_APP": "wsgi",
        **{f"SIPUP_{k}": str(v) for k, v in {"DATABASE_URL": url, "SECRET_KEY": "benchmark", **settings}.items()},
    }
    print(f"== {label} (jobs table: {url.split('://')[0]}, queue: {app.extensions['queue'].backend}; mail to {buyer})")
    try:
        for kind, name, args, count in (
            ("no-op", "ping", (), jobs),
            ("email", "send_mail", ("order_confirmation", order_id), mails),
        ):
            enqueue_s = _fill(app, name, args, count)
            direct = bench_direct(app, name, args, count)
            processed = bench_process(app, name, args, count)
            cli = bench_cli(app, env, name, args, count)
            worker = bench_worker(app, name, args, count)
            overhead_ms = (1 / processed - 1 / direct) * 1000
            print(
                f"{kind:>5} x{count}: direct {direct:,.0f}/s | enqueue+commit {count / enqueue_s:,.0f}/s | "
                f"process (10 a run) {processed:,.0f}/s = {processed / direct:.2f}x direct, "
                f"{overhead_ms:.1f} ms queue cost per job | "
                f"`flask queue process --limit {count}` {cli:,.0f}/s incl. start-up | "
                f"worker (2 threads) {worker:,.0f}/s = {worker / processed:.2f}x process"
            )
    finally:
        smtp.stop()
        with app.app_context():
            app.extensions["queue"].huey.flush()
            db.engine.dispose()
        app.extensions["counters"].flush()  # nothing left to write once the namespace is deleted
        app.extensions["query_stats"].flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400, help="no-op jobs per measurement (default 400)")
    parser.add_argument("--mails", type=int, default=150, help="email jobs per measurement (default 150)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    server_url, redis_url = os.environ.get("SIPUP_BENCH_DATABASE_URL"), os.environ.get("SIPUP_BENCH_REDIS_URL")
    with tempfile.TemporaryDirectory(prefix="sipup-bench-") as folder:
        instance = os.path.join(folder, "sqlite")
        os.makedirs(instance)
        run("SQLite footprint", f"sqlite:///{os.path.join(instance, 'bench.db')}", instance, {}, args.jobs, args.mails)
        if not redis_url:
            print("(set SIPUP_BENCH_REDIS_URL=redis://127.0.0.1:6379/15 to measure Huey on Redis too)")
            return
        namespace = f"sipupbench{secrets.token_hex(4)}"
        instance = os.path.join(folder, "redis")
        os.makedirs(instance)
        url, drop = (
            scratch_database(server_url) if server_url else (f"sqlite:///{os.path.join(instance, 'bench.db')}", None)
        )
        try:
            run(
                "Redis footprint",
                url,
                instance,
                {"REDIS_URL": redis_url, "REDIS_NAMESPACE": namespace},
                args.jobs,
                args.mails,
            )
        finally:
            import redis

            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(match=f"{namespace}:*")) + list(client.scan_iter(match=f"huey.*{namespace}*"))
            if keys:
                client.delete(*keys)
            client.close()
            if drop:
                drop()


if __name__ == "__main__":
    main()
