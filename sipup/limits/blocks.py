"""Blocks: clients refused too often are blocked for a period that doubles at each repeat, in Redis or
instance/limits.db (shared by the server processes and the command line)."""

import json
import logging
import math
import threading
import time
from contextlib import closing
from dataclasses import asdict, dataclass

from sipup import redisclient
from sipup.metrics.counter_stores import connect_sqlite

log = logging.getLogger("sipup.limits")

SNAPSHOT_SECONDS = 1.0  # how stale a process's copy of the block list may be
STORE_RETRY_SECONDS = 30


@dataclass
class Block:
    who: str  # "addr:<address>" or "user:<id>"
    why: str
    since: float
    until: float
    level: int  # 1 for the first block, 2 when it doubled once, ...
    forget: float  # when the level has decayed to nothing and the record can go

    def seconds_left(self, now=None):
        return max(0, math.ceil(self.until - (time.time() if now is None else now)))


class SqliteBlockStore:
    """Blocks in instance/limits.db, shared by the server processes and the command line of one host."""

    name = "sqlite"

    def __init__(self, path):
        self.path = path
        with closing(self._connect()) as conn, conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS blocks (who TEXT PRIMARY KEY, why TEXT, since REAL, until REAL, "
                "level INTEGER, forget REAL)"
            )

    def _connect(self):
        return connect_sqlite(self.path)

    def all(self):
        with closing(self._connect()) as conn:
            rows = conn.execute(
                "SELECT who, why, since, until, level, forget FROM blocks WHERE forget > ?", (time.time(),)
            ).fetchall()
        return {row[0]: Block(*row) for row in rows}

    def put(self, block):
        with closing(self._connect()) as conn, conn:
            conn.execute("DELETE FROM blocks WHERE forget <= ?", (time.time(),))
            conn.execute("INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?, ?)", tuple(asdict(block).values()))

    def delete(self, who):
        with closing(self._connect()) as conn, conn:
            return conn.execute("DELETE FROM blocks WHERE who = ?", (who,)).rowcount > 0


class RedisBlockStore:
    """Blocks in one Redis hash, shared by every process and host."""

    name = "redis"

    def __init__(self, url, namespace):
        self.key = f"{namespace}:limits:blocks"
        self.client = redisclient.connect(url, timeout=0.5)

    def all(self):
        now, found, stale = time.time(), {}, []
        for who, value in self.client.hgetall(self.key).items():
            block = Block(**json.loads(value))
            if block.forget > now:
                found[block.who] = block
            else:
                stale.append(who)
        if stale:
            self.client.hdel(self.key, *stale)
        return found

    def put(self, block):
        self.client.hset(self.key, block.who, json.dumps(asdict(block)))

    def delete(self, who):
        return self.client.hdel(self.key, who) > 0


class Blocks:
    """The block list: read from the store at most once a second per process, written through at once.

    A process may enforce a block set elsewhere up to SNAPSHOT_SECONDS late; the shared counters
    refuse that client meanwhile anyway, since a block only follows refusals.
    """

    def __init__(self, store, base, cap, decay, on_lift=None):
        self.store, self.base, self.cap, self.decay = store, base, cap, decay
        self.on_lift = on_lift  # called with `who` when a block ended early (lifted by an admin elsewhere)
        self.lock = threading.Lock()
        self.snapshot = {}
        self.read_at = -math.inf
        self.store_error = None

    def current(self):
        """{who: Block} as of at most a second ago (without waiting for another thread's read)."""
        wait = STORE_RETRY_SECONDS if self.store_error else SNAPSHOT_SECONDS
        if time.monotonic() - self.read_at >= wait and self.lock.acquire(blocking=False):
            try:
                self.read_at = time.monotonic()
                before, self.snapshot = self.snapshot, self._read()
            finally:
                self.lock.release()
            now = time.time()
            for who in [w for w, b in before.items() if b.until > now and w not in self.snapshot]:
                self._lifted(who)
        return self.snapshot

    def _lifted(self, who):
        if self.on_lift:
            self.on_lift(who)

    def _read(self):
        try:
            found = self.store.all()
        except Exception as exc:  # the store is down: keep enforcing what we know
            self._failed("read", exc)
            return self.snapshot
        self.store_error = None
        return found

    def _failed(self, action, exc):
        if self.store_error is None:
            log.warning(
                "Blocks could not be %s (%s store); enforcing this process's copy: %s", action, self.store.name, exc
            )
        self.store_error = str(exc) or type(exc).__name__

    def block(self, who, why, now=None):
        """Block `who`: one level above the last block, less one level per decay period since it ended."""
        now = time.time() if now is None else now
        with self.lock:
            known = self._read().get(who) or self.snapshot.get(who)
            if known and known.until > now:  # another thread or process was first
                return known
            level = 1
            if known:
                level += max(0, known.level - int((now - known.until) // self.decay))
            until = now + min(self.base * 2 ** (level - 1), self.cap)
            block = Block(who, why, now, until, level, until + self.decay * level)
            try:
                self.store.put(block)
            except Exception as exc:
                self._failed("saved", exc)
            self.snapshot = {**self.snapshot, who: block}
        log.warning("Blocked %s for %d s (level %d): %s", who, block.seconds_left(now), level, why)
        return block

    def in_force(self, now=None):
        """Blocks not yet over, freshly read, soonest end first."""
        now = time.time() if now is None else now
        self.read_at = -math.inf
        return sorted((b for b in self.current().values() if b.until > now), key=lambda b: b.until)

    def lift(self, who):
        """End `who`'s block and forget its level; True when there was one."""
        with self.lock:
            existed = who in self.snapshot
            self.snapshot = {k: v for k, v in self.snapshot.items() if k != who}
            existed = self.store.delete(who) or existed
        self._lifted(who)
        return existed
