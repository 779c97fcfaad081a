"""Collect concurrent requests of in-process backends into batches, so a GPU runs at batch size > 1.

Why: the runner keeps `--concurrency` samples in flight, and agent graphs add several calls per sample;
an in-process model that answers them one at a time behind a lock leaves the accelerator mostly idle.
`MicroBatcher` hands every request to one worker thread; the worker takes what is queued (waiting at most
`max_wait_s` for more once it has one, up to `max_batch`), splits it into groups whose requests can share
one generate call (`key`), and runs each group. Results and errors go back per request, to whichever event
loop asked, so one failing request never fails its batch-mates.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """`await submit(item)` -> result of `run_batch([... item ...])[i]`. `run_batch` returns one result
    or one Exception per item, in order; it runs in the worker thread, one batch at a time."""

    def __init__(self, run_batch: Callable[[list[T]], Sequence[R | BaseException]], *, max_batch: int = 8,
                 max_wait_s: float = 0.005, key: Callable[[T], Hashable] | None = None, name: str = "batcher") -> None:
        self.run_batch = run_batch
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max_wait_s
        self.key = key or (lambda item: None)
        self.name = name
        self._queue: queue.Queue[tuple[T, concurrent.futures.Future[R]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batch_sizes: list[int] = []  # sizes of the batches run so far (tests, benchmarks)

    async def submit(self, item: T) -> R:
        future: concurrent.futures.Future[R] = concurrent.futures.Future()
        self._ensure_thread()
        self._queue.put((item, future))
        return await asyncio.wrap_future(future)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()

    def _collect(self, first: tuple[T, concurrent.futures.Future[R]]) -> list[tuple[T, concurrent.futures.Future[R]]]:
        items = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(items) < self.max_batch:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    nxt = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if nxt is None:
                self._queue.put(None)  # stop after this batch
                break
            items.append(nxt)
        return items

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items = self._collect(first)
            groups: dict[Hashable, list[tuple[T, concurrent.futures.Future[R]]]] = {}
            for item, future in items:
                if future.set_running_or_notify_cancel():
                    groups.setdefault(self.key(item), []).append((item, future))
            for group in groups.values():
                self._run(group)

    def _run(self, group: list[tuple[T, concurrent.futures.Future[R]]]) -> None:
        self.batch_sizes.append(len(group))
        try:
            results = list(self.run_batch([item for item, _ in group]))
            if len(results) != len(group):
                raise RuntimeError(f"batch of {len(group)} returned {len(results)} results")
        except BaseException as exc:  # the whole batch failed: every request gets the error
            results = [exc] * len(group)
        for (_, future), result in zip(group, results, strict=True):
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5)
        self._thread = None
