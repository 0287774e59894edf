"""The one place that makes a Redis client from sipup's Redis URL (SIPUP_REDIS_URL, and SIPUP_CACHE_URL naming Redis).

redis://, rediss://, unix://      one Redis server (redis-py's from_url)
redis+sentinel://[:password@]host1:26379,host2:26379/MASTER_NAME/DB
                                  Redis Sentinel: the client asks the sentinels which server is the master's
                                  primary and asks again whenever a connection to it fails, so after a failover
                                  the next command reaches the promoted replica without a restart.

Every user of Redis (cache, rate limits, blocks, job queue, counters, health checks, start-up) calls connect()
here; Flask-Limiter's storage (the `limits` library builds its own clients) gets its URL from limits_storage().
"""

import re

import redis
from redis.sentinel import MasterNotFoundError, Sentinel

from sipup.config import parse_sentinel_url

SENTINEL_SCHEME = "redis+sentinel"


def is_sentinel(url):
    """True when the URL names Redis Sentinel rather than one Redis server."""
    return str(url).split("://", 1)[0].lower() == SENTINEL_SCHEME


def connect(url, timeout, connect_timeout=None, **options):
    """A redis.Redis for the URL (the Sentinel master's primary for redis+sentinel://); every socket operation
    gives up after `timeout` seconds, connecting after `connect_timeout` (the same unless given)."""
    connect_timeout = timeout if connect_timeout is None else connect_timeout
    if not is_sentinel(url):
        return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=connect_timeout, **options)
    where = parse_sentinel_url(url)
    return _sentinel(where, connect_timeout).master_for(
        where.master,
        db=where.db,
        username=where.username,
        password=where.password,
        socket_timeout=timeout,
        socket_connect_timeout=connect_timeout,
        **options,
    )


def _sentinel(where, timeout):
    # The password is the primary's and replicas' (requirepass): the sentinels are asked without one.
    return Sentinel(where.sentinels, sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout})


def primary_address(url, timeout=1.0):
    """ "host:port" of the server the URL reaches now: the sentinels' answer for the master, or the one server.
    Raises redis.RedisError (MasterNotFoundError when no sentinel knows the master or none answers)."""
    if not is_sentinel(url):
        where = redis.connection.parse_url(url)
        return where.get("path") or f"{where.get('host', 'localhost')}:{where.get('port', 6379)}"
    where = parse_sentinel_url(url)
    host, port = _sentinel(where, timeout).discover_master(where.master)
    return f"{host}:{port}"


def master_problem(url, timeout=1.0):
    """For a redis+sentinel:// URL, what stops it reaching a primary, in words: no sentinel answers, or those that
    answer know no master of that name (SENTINEL GET-MASTER-ADDR-BY-NAME answers nothing); else None."""
    if not is_sentinel(url):
        return None
    where = parse_sentinel_url(url)
    answered = []
    for host, port in where.sentinels:
        client = redis.Redis(host=host, port=port, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            address = client.sentinel_get_master_addr_by_name(where.master)
        except redis.RedisError:
            continue
        finally:
            client.close()
        if address:
            return None
        answered.append(f"{host}:{port}")
    hosts = ",".join(f"{host}:{port}" for host, port in where.sentinels)
    if not answered:
        return f"no sentinel of {hosts} answers"
    return (
        f"the sentinels at {','.join(answered)} know no master named {where.master!r} "
        "(sentinel get-master-addr-by-name answers nothing): use the name of their `sentinel monitor` line"
    )


def describe(url):
    """Where the URL points, for messages: the server, or the sentinels and the master's name."""
    if not is_sentinel(url):
        return primary_address(url)
    where = parse_sentinel_url(url)
    hosts = ",".join(f"{host}:{port}" for host, port in where.sentinels)
    return f"master {where.master!r} of the sentinels {hosts}"


def limits_storage(url, timeout):
    """(storage URI, storage options) of the same Redis for Flask-Limiter: `limits` takes redis:// as it is, and
    has its own redis+sentinel://host:port,host:port/MASTER, which takes the database and password as options."""
    sockets = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if not is_sentinel(url):
        return url, sockets
    where = parse_sentinel_url(url)
    hosts = ",".join(f"{host}:{port}" for host, port in where.sentinels)
    # limits sends the password to the sentinels too unless sentinel_kwargs says otherwise.
    sentinel_kwargs = {**sockets, "password": None, "username": None}
    options = {**sockets, "db": where.db, "sentinel_kwargs": sentinel_kwargs}
    options["use_replicas"] = False  # a count read on a replica lags behind the hits
    if where.password:
        options["password"] = where.password
    if where.username:
        options["username"] = where.username
    return f"{SENTINEL_SCHEME}://{hosts}/{where.master}", options


def delete_namespace(client, namespace):
    """Delete every key sipup keeps under SIPUP_REDIS_NAMESPACE=`namespace` through a redis-py `client`: its own
    (`<namespace>:...`) and the job queue's, which Huey names after the queue (jobs.store.make_huey) without its
    punctuation (`huey.redis.<namespace>_queue`, `huey.results.<namespace>_queue`, ...). For scratch namespaces of
    tests and benchmarks; the number of keys deleted."""
    queue = re.sub(r"[^A-Za-z0-9_]", "", f"{namespace}_queue")  # as Huey's RedisStorage.clean_name makes it
    keys = [key for pattern in (f"{namespace}:*", f"huey.*.{queue}*") for key in client.scan_iter(match=pattern)]
    if keys:
        client.delete(*keys)
    return len(keys)


__all__ = [
    "MasterNotFoundError",
    "connect",
    "delete_namespace",
    "describe",
    "is_sentinel",
    "limits_storage",
    "master_problem",
    "primary_address",
]
