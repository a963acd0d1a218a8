"""Dynamic batching of generator calls, and a byte budget for requests in flight.

Concurrent requests for one task are queued and merged into one onnxruntime
call: the exported generator is batch independent (an image depends only on
its own ``z`` and label), so a merged call gives every request exactly the
images it would have got alone, at a lower cost per image.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from .errors import PayloadTooLargeError

MAX_BATCH = 256
MAX_WAIT = 0.002


@dataclass
class _Job:
    z: np.ndarray
    labels: np.ndarray
    future: asyncio.Future = field(repr=False)
    timings: dict | None = None  # filled with "queue" and "compute_infer" seconds
    queued_at: float = 0.0


class DynamicBatcher:
    """Merge concurrent ``generate`` calls on one model into single ``run`` calls.

    A worker coroutine takes the queued requests, waits at most ``max_wait``
    seconds for more (only while more keep arriving, and only when the
    previous batch merged several requests, so a lone client pays no wait),
    and runs them as one batch of at most ``max_batch`` rows on
    ``executor``. A request larger than ``max_batch`` runs on its own. One
    batch runs at a time per batcher; requests arriving meanwhile form the
    next one.

    Args:
        run: ``run(z, labels) -> images``, blocking (e.g.
            :meth:`keras_mergan.serve.Sampler.generate`); called from ``executor``.
        max_batch: rows per merged call.
        max_wait: seconds the worker may wait for stragglers.
        executor: where ``run`` is called (default: the loop's).
        observe: called as ``observe(rows, seconds)`` after each call of ``run``
            (metrics and statistics).

    Example:

    >>> import asyncio, numpy as np
    >>> batcher = DynamicBatcher(lambda z, labels: z * 2, max_batch=64)
    >>> async def two_requests():
    ...     return await asyncio.gather(
    ...         batcher.generate(np.ones((2, 1), np.float32), np.zeros(2)),
    ...         batcher.generate(np.ones((3, 1), np.float32), np.zeros(3)))
    >>> [a.shape for a in asyncio.run(two_requests())], batcher.calls
    ([(2, 1), (3, 1)], 1)
    """

    def __init__(
        self,
        run: Callable[[np.ndarray, np.ndarray], np.ndarray],
        *,
        max_batch: int = MAX_BATCH,
        max_wait: float = MAX_WAIT,
        executor: Executor | None = None,
        observe: Callable[[int, float], None] | None = None,
    ):
        if max_batch < 1 or max_wait < 0:
            raise ValueError("max_batch must be >= 1 and max_wait >= 0")
        self._run = run
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._executor = executor
        self._observe = observe
        self._queue: collections.deque[_Job] = collections.deque()
        self._worker: asyncio.Task | None = None
        self._last_size = 0  # requests in the previous batch
        self.calls = 0  # merged calls of ``run``
        self.requests = 0  # requests answered

    @property
    def queued(self) -> int:
        """Requests waiting for the next batch."""
        return len(self._queue)

    async def generate(
        self, z: np.ndarray, labels: np.ndarray, timings: dict | None = None
    ) -> np.ndarray:
        """The output of ``run(z, labels)``, computed together with other requests.

        ``timings``, if given, gets the seconds this request waited for its
        batch (``queue``) and that its batch took (``compute_infer``).
        """
        loop = asyncio.get_running_loop()
        job = _Job(z, labels, loop.create_future(), timings, loop.time())
        self._queue.append(job)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work())
        return await job.future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch: list[_Job] = []
            rows = self._take(batch, 0)
            # Wait for stragglers only while requests come together: a lone
            # client would pay the loop turns for nothing.
            deadline = loop.time() + (self.max_wait if self._last_size > 1 else 0)
            while rows < self.max_batch and loop.time() < deadline:
                before = len(batch)
                # Two loop turns: one for the sockets' data to become tasks,
                # one for those tasks to reach generate().
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                rows = self._take(batch, rows)
                if len(batch) == before:
                    break
            self._last_size = len(batch)
            await self._run_batch(loop, batch)

    def _take(self, batch: list[_Job], rows: int) -> int:
        """Move queued jobs into ``batch`` while they fit; the first always does."""
        while self._queue:
            job = self._queue[0]
            if job.future.done():  # its request was cancelled
                self._queue.popleft()
                continue
            if batch and rows + len(job.z) > self.max_batch:
                break
            batch.append(self._queue.popleft())
            rows += len(job.z)
        return rows

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Job]):
        if not batch:
            return
        if len(batch) == 1:
            z, labels = batch[0].z, batch[0].labels
        else:
            z = np.concatenate([job.z for job in batch])
            labels = np.concatenate([job.labels for job in batch])
        self.calls += 1
        started = loop.time()
        for job in batch:
            if job.timings is not None:
                job.timings["queue"] = started - job.queued_at
        try:
            images = await loop.run_in_executor(self._executor, self._run, z, labels)
        except Exception as error:
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        seconds = loop.time() - started
        if self._observe is not None:
            self._observe(len(z), seconds)
        start = 0
        for job in batch:
            if job.timings is not None:
                job.timings["compute_infer"] = seconds
            stop = start + len(job.z)
            if not job.future.done():
                job.future.set_result(images[start:stop])
            start = stop
        self.requests += len(batch)


class ByteBudget:
    """Bytes that the requests in flight may hold at once; requests queue for them.

    Every response format has a known upper bound on what the server holds
    while answering (generator output, encoded body): a request acquires
    that many bytes before it runs and releases them once its response is
    sent, so memory stays bounded however many requests arrive. A request
    needing more than the whole budget is refused at once.

    Example:

    >>> import asyncio
    >>> budget = ByteBudget(1000)
    >>> async def use():
    ...     lease = await budget.acquire(600)
    ...     held = budget.used
    ...     lease.release()
    ...     return held, budget.used
    >>> asyncio.run(use())
    (600, 0)
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.used = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future]] = (
            collections.deque()
        )

    @property
    def waiting(self) -> int:
        """Requests queued for memory."""
        return len(self._waiters)

    async def acquire(self, nbytes: int) -> Lease:
        """Wait until ``nbytes`` are free and take them (FIFO, so none starves)."""
        nbytes = max(0, int(nbytes))
        if nbytes > self.capacity:
            raise PayloadTooLargeError(
                f"this request needs about {_mib(nbytes)} of server memory; the "
                f"limit is {_mib(self.capacity)}: ask for fewer samples"
            )
        if not self._waiters and self.used + nbytes <= self.capacity:
            self.used += nbytes
            return Lease(self, nbytes)
        future = asyncio.get_running_loop().create_future()
        waiter = (nbytes, future)
        self._waiters.append(waiter)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release(nbytes)  # granted just as we were cancelled
            elif waiter in self._waiters:  # _grant may have dropped it already
                self._waiters.remove(waiter)
                self._grant()
            raise
        return Lease(self, nbytes)

    def _release(self, nbytes: int) -> None:
        self.used -= nbytes
        self._grant()

    def _grant(self) -> None:
        while self._waiters and self.used + self._waiters[0][0] <= self.capacity:
            nbytes, future = self._waiters.popleft()
            if not future.done():
                self.used += nbytes
                future.set_result(None)


class Lease:
    """Bytes taken from a :class:`ByteBudget`; ``release()`` is idempotent.

    Example:

    >>> # lease = await budget.acquire(4096); ...; lease.release()
    """

    def __init__(self, budget: ByteBudget, nbytes: int):
        self._budget = budget
        self.nbytes = nbytes

    def release(self) -> None:
        if self._budget is not None:
            budget, self._budget = self._budget, None
            budget._release(self.nbytes)


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB"
