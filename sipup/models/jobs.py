"""The durable record of background jobs and the queue's runs (sipup.jobs)."""

import enum
from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .columns import BigId, utcnow


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"  # by hand, from /monitor/jobs, before it ran


class Job(db.Model):
    """The durable record of one background job: written in the business transaction, leased while it runs.

    Huey carries the message; this row is what survives a killed process or a Redis outage (see sipup.jobs.queue).
    """

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(80))
    args: Mapped[str] = mapped_column(Text, default="[]")
    priority: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(10), default=JobStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    run_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Unique when set: a periodic job per minute, a payment reference, a reminder per invoice and day.
    dedupe_key: Mapped[str | None] = mapped_column(String(160), unique=True)
    # NULL while the job is only in this table (the outbox): the processor hands it to Huey.
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    error: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[str] = mapped_column(String(400), default="")

    __table_args__ = (
        Index("ix_jobs_status_run_at", "status", "run_at"),
        Index("ix_jobs_finished_at", "finished_at"),
        {"sqlite_autoincrement": True},  # ids are never reused: a stale message cannot claim a new job
    )


class QueueRun(db.Model):
    """The last run of each processor (`flask queue process`, each worker): the heartbeat /monitor shows."""

    __tablename__ = "queue_runs"
    processor: Mapped[str] = mapped_column(String(120), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    jobs_run: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
