"""The cost of the sign-out check: a signed-in buyer's pages under real waitress, with this code and with
the code of an earlier revision (default: the last one before sessions were kept on the server), in one run.

python -m benchmarks.sessions [--before REV] [--seconds 3] [--rounds 5] [--connections 4] [--redis]

Both trees get the same demo data (it is seeded with fixed random seeds) and the same settings; rounds
alternate before/after and after/before, so a drift in the machine's load falls on both alike. With
--redis, both use SIPUP_REDIS_URL (default redis://127.0.0.1:6379/15, SIPUP_BENCH_REDIS_URL to choose)
in namespaces of their own, deleted afterwards.
"""

import argparse
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmarks.limits import ROOT, Server, _demo_instance, _python_load, _wrk, alternate, delete_namespace

BEFORE = "95c7258"  # the login cookie carried users.session_token; signing out ended nothing on the server
PAGES = {
    "/products": "the cached catalog page",
    "/orders": "the order history (a query of its own)",
}


def export(revision, target):
    """The tree of `revision` in target, as git has it (no work tree of its own to clean up)."""
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help="The revision to compare with.")
    parser.add_argument("--seconds", type=int, default=3, help="Seconds per measured round.")
    parser.add_argument("--rounds", type=int, default=5, help="Rounds per version and page.")
    parser.add_argument("--connections", type=int, default=4, help="Concurrent connections.")
    parser.add_argument("--redis", action="store_true", help="Cache (and limits) in Redis for both.")
    args = parser.parse_args()
    load = _wrk if shutil.which("wrk") else _python_load
    folder = Path(tempfile.mkdtemp(prefix="sipup-bench-sessions-"))
    redis_url = os.environ.get("SIPUP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    namespaces = {name: f"sipupbench-{secrets.token_hex(4)}" for name in ("before", "after")}
    trees = {"before": export(args.before, folder / "before-tree"), "after": ROOT}
    servers = {}
    try:
        for name, tree in trees.items():
            env = {"SIPUP_REDIS_URL": redis_url, "SIPUP_REDIS_NAMESPACE": namespaces[name]} if args.redis else {}
            template = _demo_instance(folder / f"{name}-template", root=tree)
            servers[name] = Server(name, folder, env, template, root=tree)
        for server in servers.values():
            server.wait()
        cookies = {name: server.session_cookie() for name, server in servers.items()}
        print(
            f"before: {args.before}; after: this tree; {'Redis' if args.redis else 'embedded default'}; "
            f"load: {load.__name__.strip('_')}, {args.connections} connections, {args.seconds} s a round, "
            f"{args.rounds} rounds each, median reported; load average {os.getloadavg()[0]:.1f}"
        )
        for page, what in PAGES.items():
            (before, cpu_before), (after, cpu_after) = alternate(
                servers, ["before", "after"], page, cookies, args, load
            )
            print(
                f"{page} ({what}): before {before:5.0f} req/s, after {after:5.0f} req/s, after/before = "
                f"{after / before:.2f}; server CPU per request before {cpu_before:.2f} ms, after {cpu_after:.2f} ms, "
                f"before/after = {cpu_before / cpu_after:.2f}"
            )
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
        if args.redis:
            for namespace in namespaces.values():
                delete_namespace(redis_url, namespace)


if __name__ == "__main__":
    main()
