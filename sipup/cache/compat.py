"""The cachelib (0.17) internals the cache layer relies on, in one place (requirements.txt pins cachelib);
tests/test_compat.py checks each against the installed version."""


def redis_client_and_key(store, key):
    """A RedisCache's write client and the full Redis key of `key`: the recompute lock is one SET NX EX
    (cachelib's add() is SETNX then EXPIRE, and a process dying between them would keep the lock forever)."""
    return store._write_client, store._get_prefix() + key


def redis_read_client_and_prefix(store):
    """A RedisCache's read client and its key prefix (a key_prefix may be a function): the page's read-ahead
    rides in the rate limits' pipeline when both use the same server, and names the keys as cachelib does."""
    return getattr(store, "_read_client", None), store._get_prefix()


def close_redis(store):
    """Close a RedisCache's two connection pools (cachelib has no close())."""
    store._write_client.close()
    store._read_client.close()


def remove_expired_files(store, now):
    """Delete a FileSystemCache's expired entries with cachelib's own sweep (which keeps its file count
    right); returns how many went."""
    before = sum(1 for _ in store._list_dir())
    store._remove_expired(now)
    return before - sum(1 for _ in store._list_dir())
