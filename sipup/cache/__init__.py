"""The cache: cached reads that are never stale, behind a breaker and single flight, on the store
SIPUP_CACHE_URL names.

Modules: `layer` (the cached-read API, `CacheLayer` made of the parts that follow, statistics), `reads`
(cached, cached_many, prefetch), `single_flight` (one computation per key), `breaker` (the circuit breaker
and fallback), `invalidation` (`touch` and the session hooks that renew generations after commit), `values`
(`Plain`, `PageOf`), `drivers` (which store a URL names: Redis, Memcached, filesystem, in-process),
`cli` (`flask cache stats`, `flask cache clear`).

Exports the API that services use: `cached`, `cached_many`, `prefetch`, `touch`, `Plain`, `PageOf`, `cache_status`,
`purge_expired` for the hourly clean-up, and `register_cache` for create_app().
"""

from sipup.cache.invalidation import touch
from sipup.cache.layer import (
    cache_status,
    cached,
    cached_many,
    prefetch,
    prefetch_riding,
    purge_expired,
    register_cache,
)
from sipup.cache.values import PageOf, Plain

__all__ = [
    "PageOf",
    "Plain",
    "cache_status",
    "cached",
    "cached_many",
    "prefetch",
    "prefetch_riding",
    "purge_expired",
    "register_cache",
    "touch",
]
