"""Training batches, drawn ahead of the network: by a background thread or by worker processes.

Every training sample is seeded by its index, so batch ``i`` holds the same
arrays however it is drawn: in the training process, by one background thread
(``data.workers: 0``, the default: on a 2-core CPU the network needs the
cores), or by ``data.workers`` processes (on a GPU, where one thread cannot
draw heads as fast as the network takes them: a synthetic head on the 3 mm grid costs about
1.7 s of one core, a training step on a GPU a few milliseconds).

Worker processes are started with ``spawn`` (no copy of the training process's
threads or engine state) and each builds its own sample source. They are given
runs of consecutive iterations that start and end on a head's boundary (each
head serves ``data.patches_per_head`` consecutive samples), so no head is drawn
twice.
"""

from __future__ import annotations

import math
import multiprocessing
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from ..errors import DeidError

__all__ = ["batch", "batches", "run_length"]

Batch = tuple[np.ndarray, np.ndarray]

# The sample source of a worker process (built once per process by _start_worker).
_WORKER_SAMPLES: Any = None


def batch(samples: Any, iteration: int, size: int) -> Batch:
    """The batch of ``iteration``: samples ``iteration * size`` onwards, stacked."""
    pairs = [samples.training(iteration * size + k) for k in range(size)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def run_length(batch_size: int, patches_per_head: int) -> int:
    """The fewest consecutive iterations that hold whole heads only (from a multiple of it)."""
    return patches_per_head // math.gcd(patches_per_head, batch_size)


def batches(
    samples: Any,
    start: int,
    stop: int,
    size: int,
    *,
    workers: int = 0,
    make_samples: Callable[[], Any] | None = None,
    patches_per_head: int = 1,
    depth: int = 2,
) -> Iterator[tuple[int, Batch]]:
    """Yield ``(iteration, batch)`` for ``start <= iteration < stop``, in order.

    Args:
        samples: The sample source of this process (used when ``workers`` is 0).
        start, stop: The iterations.
        size: The batch size.
        workers: Worker processes; 0 draws in one background thread.
        make_samples: With workers, a picklable callable that builds a sample
            source equal to ``samples`` (e.g. ``functools.partial(cls, config)``).
        patches_per_head: Consecutive samples drawn from one head (runs of
            iterations given to a worker never split a head).
        depth: Batches (thread) or runs per worker (processes) drawn ahead.

    An error while drawing is raised here, at the iteration that needed it.

    Raises:
        DeidError: A worker process stopped (killed, out of memory).
    """
    if workers <= 0:
        yield from _threaded(samples, start, stop, size, depth)
        return
    if make_samples is None:
        raise ValueError("workers need make_samples, a picklable builder of the sample source")
    yield from _processes(make_samples, start, stop, size, workers, run_length(size, patches_per_head), depth)


def _threaded(samples: Any, start: int, stop: int, size: int, depth: int) -> Iterator[tuple[int, Batch]]:
    """Batches from a background thread (numpy and scipy release the GIL)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = threading.Event()

    def work() -> None:
        for i in range(start, stop):
            if done.is_set():
                return
            try:
                q.put((i, batch(samples, i, size)))
            except Exception as e:
                q.put((i, e))
                return

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        for _ in range(start, stop):
            i, item = q.get()
            if isinstance(item, Exception):
                raise item
            yield i, item
    finally:
        done.set()


def _start_worker(make_samples: Callable[[], Any]) -> None:
    global _WORKER_SAMPLES
    _WORKER_SAMPLES = make_samples()


def _draw_run(first: int, count: int, size: int) -> tuple[list[Batch], Exception | None]:
    """The batches of a run, and the error that stopped it early (or None)."""
    out: list[Batch] = []
    try:
        for i in range(first, first + count):
            out.append(batch(_WORKER_SAMPLES, i, size))
    except Exception as e:
        return out, e
    return out, None


def _runs(start: int, stop: int, length: int, min_length: int) -> Iterator[tuple[int, int]]:
    """``(first, count)`` runs covering ``start..stop``, cut at multiples of ``length``.

    Runs hold at least ``min_length`` iterations where they can (fewer
    round trips to the workers), always a whole number of ``length``.
    """
    step = length * max(1, math.ceil(min_length / length))
    i = start
    while i < stop:
        end = min(stop, (i // length + 1) * length + step - length)
        yield i, end - i
        i = end


def _processes(
    make_samples: Callable[[], Any], start: int, stop: int, size: int, workers: int, length: int, depth: int
) -> Iterator[tuple[int, Batch]]:
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_start_worker, initargs=(make_samples,)
    )
    runs = _runs(start, stop, length, min_length=2)
    pending: deque[tuple[int, Future]] = deque()
    try:
        for first, count in runs:
            pending.append((first, pool.submit(_draw_run, first, count, size)))
            if len(pending) >= workers * depth:
                break
        while pending:
            first, future = pending.popleft()
            try:
                drawn, error = future.result()
            except BrokenProcessPool as e:
                raise DeidError(
                    f"a sample-drawing worker process stopped ({e}); it may have run out of memory: "
                    "use fewer workers (--workers; 0 draws in one thread of the training process)"
                ) from e
            for k, item in enumerate(drawn):
                yield first + k, item
            if error is not None:
                raise error
            nxt = next(runs, None)
            if nxt is not None:
                pending.append((nxt[0], pool.submit(_draw_run, nxt[0], nxt[1], size)))
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
