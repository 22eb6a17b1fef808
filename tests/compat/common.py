"""Shared helpers for the Kafka client compatibility checks (run by scripts/kafka-compat).

Each check prints `PASS name` or `FAIL name: why`; the script counts them. Every wait is bounded.
"""
import os
import sys
import time
import traceback

BOOTSTRAP = os.environ["KAFKA_BOOTSTRAP"]
RUN_ID = os.environ.get("COMPAT_RUN_ID", str(os.getpid()))

_failed = 0


def name(prefix):
    """A topic/group name unique to this run."""
    return f"{prefix}-{RUN_ID}"


def check(label, fn):
    """Runs one check; never lets an exception stop the others."""
    global _failed
    start = time.time()
    try:
        fn()
        print(f"PASS {label} ({time.time() - start:.1f}s)", flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
        _failed += 1
        print(f"FAIL {label}: {e!r}", flush=True)
        traceback.print_exc(file=sys.stderr)


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def messages(n, prefix):
    """n keyed messages: (key, value) bytes, values unique."""
    return [(f"key-{i % 97}".encode(), f"{prefix}-value-{i:06d}".encode()) for i in range(n)]


def wait_until(pred, timeout, what, interval=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def finish():
    sys.exit(1 if _failed else 0)
