"""Where the shared counters live: instance/metrics.db (SQLite, WAL; the embedded default, shared by the
server processes and the command line) or Redis hashes (every process and host); the same interface for
both: write pending counts, maxima and texts, read buckets, running totals, texts and marks, prune."""

import socket
import sqlite3
import time
from collections import defaultdict
from contextlib import closing

from sipup import redisclient
from sipup.files import private_file

RESOLUTIONS = {"minute": (60, 120), "hour": (3600, 7 * 24 + 1)}  # bucket seconds, buckets kept (a week of hours)
TOTAL = "total"  # the resolution of running totals: one bucket (start 0), never pruned or expired
DESCRIPTION_SECONDS = 8 * 86400  # a text not written again for this long goes (the 7-day range shows it)
PRUNE_SECONDS = 60  # the SQLite store drops old buckets at most this often (buckets are a minute at least)


def connect_sqlite(path):
    """A connection to a statistics file in instance/ that the server's threads, its other processes and
    the command line share: WAL, so readers never wait for the writer. A new file is made 0600 first, so its
    -wal and -shm files (which SQLite gives the database's mode) are private too."""
    conn = sqlite3.connect(private_file(path), timeout=5)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


class SqliteCounterStore:
    """Counters in instance/metrics.db: the embedded default, shared by the server processes and the CLI."""

    name = "sqlite"

    def __init__(self, path, host=socket.gethostname()):
        self.path, self.host = path, host
        self.last_prune = -float("inf")  # the first write prunes
        with closing(self._connect()) as conn, conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS counters (grp TEXT, res TEXT, start INTEGER, name TEXT, "
                "value INTEGER, PRIMARY KEY (grp, res, start, name)) WITHOUT ROWID"
            )
            conn.execute("CREATE TABLE IF NOT EXISTS marks (name TEXT PRIMARY KEY, since REAL)")
            conn.execute(  # running totals (TOTAL) per host: never pruned
                "CREATE TABLE IF NOT EXISTS host_totals (grp TEXT, host TEXT, name TEXT, value INTEGER, "
                "PRIMARY KEY (grp, host, name)) WITHOUT ROWID"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS maxima (grp TEXT, res TEXT, start INTEGER, name TEXT, "
                "value REAL, PRIMARY KEY (grp, res, start, name)) WITHOUT ROWID"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS descriptions (grp TEXT, key TEXT, text TEXT, written REAL, "
                "PRIMARY KEY (grp, key)) WITHOUT ROWID"
            )

    def _connect(self):
        return connect_sqlite(self.path)

    def write(self, pending, maxima=None, descriptions=None):
        rows = [(g, res, start, name, value) for (g, res, start, name), value in pending.items() if res != TOTAL]
        totals = [(g, self.host, name, value) for (g, res, _start, name), value in pending.items() if res == TOTAL]
        now = time.time()
        with closing(self._connect()) as conn, conn:
            conn.executemany(
                "INSERT INTO counters (grp, res, start, name, value) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (grp, res, start, name) DO UPDATE SET value = value + excluded.value",
                rows,
            )
            conn.executemany(
                "INSERT INTO host_totals (grp, host, name, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (grp, host, name) DO UPDATE SET value = value + excluded.value",
                totals,
            )
            conn.executemany(
                "INSERT INTO maxima (grp, res, start, name, value) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (grp, res, start, name) DO UPDATE SET value = MAX(value, excluded.value)",
                [(*key, value) for key, value in (maxima or {}).items()],
            )
            conn.executemany(
                "INSERT INTO descriptions (grp, key, text, written) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (grp, key) DO UPDATE SET text = excluded.text, written = excluded.written",
                [(g, key, text, now) for (g, key), text in (descriptions or {}).items()],
            )
            if time.monotonic() - self.last_prune >= PRUNE_SECONDS:
                self.last_prune = time.monotonic()
                self._prune(conn, now)

    def prune(self, now=None):
        """Drop buckets and maxima past their retention and texts not written for DESCRIPTION_SECONDS;
        returns the rows removed. Writes prune too; this covers the hours when nothing is written."""
        with closing(self._connect()) as conn, conn:
            return self._prune(conn, time.time() if now is None else now)

    @staticmethod
    def _prune(conn, now):
        removed = 0
        for res, (seconds, kept) in RESOLUTIONS.items():
            for table in ("counters", "maxima"):
                removed += conn.execute(
                    f"DELETE FROM {table} WHERE res = ? AND start < ?", (res, now - seconds * kept)
                ).rowcount
        removed += conn.execute("DELETE FROM descriptions WHERE written < ?", (now - DESCRIPTION_SECONDS,)).rowcount
        return removed

    def read(self, group, res, starts):
        if res == TOTAL:
            with closing(self._connect()) as conn:
                rows = conn.execute(
                    "SELECT name, value FROM host_totals WHERE grp = ? AND host = ?", (group, self.host)
                ).fetchall()
            return {0: dict(rows)} if rows else {}
        found = defaultdict(dict)
        for start, name, value in self._select("counters", "start, name, value", group, res, starts):
            found[start][name] = value
        return found

    def read_maxima(self, group, res, starts):
        return dict(self._select("maxima", "name, MAX(value)", group, res, starts, "GROUP BY name"))

    def _select(self, table, columns, group, res, starts, tail=""):
        marks = ", ".join("?" * len(starts))
        with closing(self._connect()) as conn:
            return conn.execute(
                f"SELECT {columns} FROM {table} WHERE grp = ? AND res = ? AND start IN ({marks}) {tail}",
                (group, res, *starts),
            ).fetchall()

    def read_descriptions(self, group):
        with closing(self._connect()) as conn:
            return dict(conn.execute("SELECT key, text FROM descriptions WHERE grp = ?", (group,)))

    def mark(self, name, active, now):
        with closing(self._connect()) as conn, conn:
            if active:
                conn.execute("INSERT OR IGNORE INTO marks (name, since) VALUES (?, ?)", (name, now))
            row = conn.execute("SELECT since FROM marks WHERE name = ?", (name,)).fetchone()
            if not active:
                conn.execute("DELETE FROM marks WHERE name = ?", (name,))
            return row[0] if row else None

    def read_marks(self, prefix):
        with closing(self._connect()) as conn:
            rows = conn.execute("SELECT name, since FROM marks WHERE substr(name, 1, ?) = ?", (len(prefix), prefix))
            return dict(rows)

    def close(self):
        pass


class RedisCounterStore:
    """Counters in Redis hashes, one per group and bucket, added to by every process and host; each
    expires after its window. Maxima live in a hash beside their bucket's (`<bucket key>:max`), texts in
    one hash per group (`<group>:descriptions`) that expires eight days after the group's last write."""

    name = "redis"
    # KEYS[1]: a maxima hash; ARGV[1]: its seconds to live (0: none); then name, value pairs: each field
    # keeps the largest value it was given. One call per bucket, atomic against the other processes.
    _MAX = """
        for i = 2, #ARGV, 2 do
            local current = redis.call('HGET', KEYS[1], ARGV[i])
            if not current or tonumber(ARGV[i + 1]) > tonumber(current) then
                redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
            end
        end
        if tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
    """

    def __init__(self, url, namespace, host=socket.gethostname()):
        self.namespace, self.prefix, self.host = namespace, f"{namespace}:counters", host
        self.client = redisclient.connect(url, timeout=1)
        self.set_max = self.client.register_script(self._MAX)

    def _key(self, group, res, start):
        return f"{self.prefix}:{group}:{res}:{self.host if res == TOTAL else start}"

    def _descriptions_key(self, group):
        return f"{self.prefix}:{group}:descriptions"

    def write(self, pending, maxima=None, descriptions=None):
        pipe = self.client.pipeline(transaction=False)
        keys, groups = set(), set()
        for (group, res, start, name), value in pending.items():
            key = self._key(group, res, start)
            pipe.hincrby(key, name, value)
            keys.add((key, res))
            groups.add(group)
        for key, res in keys:
            if res in RESOLUTIONS:  # running totals never expire
                seconds, kept = RESOLUTIONS[res]
                pipe.expire(key, seconds * kept)
        by_bucket = defaultdict(list)
        for (group, res, start, name), value in (maxima or {}).items():
            by_bucket[(group, res, start)] += [name, repr(value)]
            groups.add(group)
        for (group, res, start), pairs in by_bucket.items():
            seconds, kept = RESOLUTIONS.get(res, (0, 0))
            self.set_max(keys=[f"{self._key(group, res, start)}:max"], args=[seconds * kept, *pairs], client=pipe)
        by_group = defaultdict(dict)
        for (group, key), text in (descriptions or {}).items():
            by_group[group][key] = text
        for group, texts in by_group.items():
            pipe.hset(self._descriptions_key(group), mapping=texts)
            groups.add(group)
        # Texts live as long as figures of their group still come in, not eight days after the last new one.
        for group in groups:
            pipe.expire(self._descriptions_key(group), DESCRIPTION_SECONDS)
        pipe.execute()

    def read(self, group, res, starts):
        found = {}
        for start, fields in zip(starts, self._hashes(self._key(group, res, start) for start in starts)):
            if fields:
                found[start] = {k.decode(): int(v) for k, v in fields.items()}
        return found

    def read_maxima(self, group, res, starts):
        found = {}
        for fields in self._hashes(f"{self._key(group, res, start)}:max" for start in starts):
            for raw_name, raw_value in fields.items():
                name, value = raw_name.decode(), float(raw_value)
                found[name] = max(found.get(name, value), value)
        return found

    def _hashes(self, keys):
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return pipe.execute()

    def read_descriptions(self, group):
        return {k.decode(): v.decode() for k, v in self.client.hgetall(self._descriptions_key(group)).items()}

    def mark(self, name, active, now):
        key = f"{self.prefix}:marks"
        pipe = self.client.pipeline(transaction=True)
        if active:
            pipe.hsetnx(key, name, now)
        pipe.hget(key, name)
        if not active:
            pipe.hdel(key, name)
        since = pipe.execute()[1 if active else 0]
        return float(since) if since is not None else None

    def read_marks(self, prefix):
        found = self.client.hgetall(f"{self.prefix}:marks")
        return {k.decode(): float(v) for k, v in found.items() if k.decode().startswith(prefix)}

    def close(self):
        self.client.close()
