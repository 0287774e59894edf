"""The Huey internals sipup relies on, in one place (requirements.txt pins huey).

tests/test_compat.py checks each against the installed Huey, so a version that changes one fails in
CI rather than in production.
"""

import signal

from huey.registry import Registry


def new_registry():
    """A task registry of its own: every app's Huey shares it, so jobs register once, at import."""
    return Registry()


def share_registry(huey, registry):
    """Make a Huey instance use the shared registry (Huey keeps it in the private `_registry`)."""
    huey._registry = registry


def stop_gracefully_on(consumer, names):
    """Make these signals stop Huey's consumer gracefully too, as its graceful_signal does.

    Huey maps each signal to (restart, graceful) in the private `_signal_actions` and installs a handler
    for every key when the consumer runs; names absent on this platform (SIGBREAK off Windows) are skipped.
    """
    for name in names:
        if hasattr(signal, name):
            consumer._signal_actions[getattr(signal, name)] = (False, True)
