"""A thread-safe memo where concurrent callers of one key share a single computation.

Why: the runner keeps several pairs in flight and scores them in a thread pool; pairs share images, and
without this every concurrent pair would detect, protect or embed the same image again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Once:
    """Memoise `fn()` per key across threads: concurrent callers of one key wait for one computation
    (pairs in flight share images; without this each would embed the same image again)."""

    def __init__(self) -> None:
        self._values: dict[Any, Any] = {}
        self._locks: dict[Any, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, fn: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._values:
                return self._values[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                if key in self._values:
                    return self._values[key]
            value = fn()
            with self._lock:
                self._values[key] = value
                self._locks.pop(key, None)
            return value
