"""An asyncio dynamic micro-batcher, small enough to read in one sitting.

Requests enter a bounded queue. One worker task takes the oldest request and keeps
collecting until the batch holds ``max_batch_size`` requests or the oldest one has waited
``max_wait_ms``; the batch function then runs in a worker thread, so the event loop keeps
accepting requests (which form the next batch) while the model computes. Each request's
future gets its own result; an exception raised by the batch function reaches exactly
the requests of that batch, and the worker goes on with the next one.

- Backpressure: a full queue raises :class:`Overloaded` at once (HTTP 503), never waits.
- Timeout: a request not answered within ``timeout_ms`` raises :class:`RequestTimeout`.
- Cancellation (a client that went away, a timeout): the request is skipped if its batch
  has not started, and its result is dropped if it has; no other request notices.
- :meth:`MicroBatcher.close` stops intake (:class:`ShuttingDown`) and, by default,
  answers everything already queued before it returns.

``max_batch_size=1`` is per-request serving through the same machinery: the baseline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Generic, Sequence, TypeVar

Req = TypeVar("Req")
Res = TypeVar("Res")

#: a batch function: requests -> one result (or an exception instance) per request, in order
BatchFn = Callable[[Sequence[Req]], Sequence[Res]]


class Overloaded(RuntimeError):
    """The queue is full: the request was rejected without being queued."""


class ShuttingDown(RuntimeError):
    """The batcher is closing (or not started) and takes no new requests."""


class RequestTimeout(TimeoutError):
    """The request was not answered within its timeout."""


@dataclass(frozen=True, kw_only=True)
class BatcherConfig:
    """``max_batch_size`` requests per model call; ``max_wait_ms``: the longest the oldest
    queued request waits for company; ``max_queue``: queued requests before rejection;
    ``timeout_ms``: per-request deadline from submission (None: no deadline)."""

    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_queue: int = 1024
    timeout_ms: float | None = 1000.0

    def __post_init__(self) -> None:
        if not (isinstance(self.max_batch_size, int) and self.max_batch_size >= 1):
            raise ValueError(f"max_batch_size must be a positive integer, got {self.max_batch_size!r}")
        if not (isinstance(self.max_queue, int) and self.max_queue >= 1):
            raise ValueError(f"max_queue must be a positive integer, got {self.max_queue!r}")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms!r}")
        if self.timeout_ms is not None and not self.timeout_ms > 0:
            raise ValueError(f"timeout_ms must be > 0 or None, got {self.timeout_ms!r}")


@dataclass
class _Pending(Generic[Req]):
    request: Req
    future: asyncio.Future
    queued_at: float  # time.perf_counter() at submission


class MicroBatcher(Generic[Req, Res]):
    """Dynamic batching of ``submit(request)`` calls into ``batch_fn(requests)`` calls.

    Use ``async with MicroBatcher(fn, config) as b: result = await b.submit(req)``, or
    :meth:`start` / :meth:`close`. ``on_batch(size, seconds)`` is called (on the event
    loop) after every model call.
    """

    def __init__(
        self,
        batch_fn: BatchFn,
        config: BatcherConfig = BatcherConfig(),
        *,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.batch_fn = batch_fn
        self.config = config
        self.on_batch = on_batch
        self.batch_sizes: Counter[int] = Counter()  # batch size -> number of model calls
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._accepting = False

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> "MicroBatcher[Req, Res]":
        """Create the queue, the worker thread and the worker task (on the running loop)."""
        if self._worker is not None:
            raise RuntimeError("MicroBatcher already started")
        self._queue = asyncio.Queue(self.config.max_queue)
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="micro-batcher")
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")
        self._accepting = True
        return self

    async def close(self, *, drain: bool = True) -> None:
        """Stop taking requests; answer the queued ones (``drain``) or fail them with
        :class:`ShuttingDown`; then stop the worker and its thread."""
        self._accepting = False
        if self._worker is None:
            return
        if drain:
            await self._queue.join()
        else:
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if not item.future.done():
                    item.future.set_exception(ShuttingDown("server is shutting down"))
                self._queue.task_done()
        self._worker.cancel()
        try:
            await self._worker
        except asyncio.CancelledError:
            pass
        if drain:  # the worker thread is idle by now; wait without blocking the loop
            await asyncio.to_thread(self._executor.shutdown, wait=True)
        else:  # a model call may still run: let the thread finish it on its own
            self._executor.shutdown(wait=False)
        self._worker = None

    async def __aenter__(self) -> "MicroBatcher[Req, Res]":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch (not counting the batch being computed)."""
        return self._queue.qsize() if self._queue is not None else 0

    # -- requests -----------------------------------------------------------------------

    async def submit(self, request: Req) -> Res:
        """Queue one request and wait for its own result.

        Raises :class:`Overloaded` (queue full), :class:`ShuttingDown`,
        :class:`RequestTimeout`, or whatever the batch function raised for its batch.
        """
        if not self._accepting:
            raise ShuttingDown("server is shutting down" if self._worker else "batcher is not started")
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(request, future, time.perf_counter()))
        except asyncio.QueueFull:
            raise Overloaded(f"queue full ({self.config.max_queue} requests waiting)") from None
        timeout = None if self.config.timeout_ms is None else self.config.timeout_ms / 1000
        try:
            return await asyncio.wait_for(future, timeout)  # cancels the future on timeout
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no answer within {self.config.timeout_ms} ms") from None

    # -- the worker -----------------------------------------------------------------------

    async def _collect(self) -> list[_Pending]:
        """The next batch: the oldest request plus whatever arrives until the batch is
        full or the oldest has waited ``max_wait_ms``. Cancelled requests are dropped."""
        first = await self._queue.get()
        batch = [first]
        deadline = first.queued_at + self.config.max_wait_ms / 1000
        while len(batch) < self.config.max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [p for p in batch if not p.future.done()]  # skip cancelled / timed out
            try:
                if live:
                    started = time.perf_counter()
                    try:
                        results = await loop.run_in_executor(self._executor, self._call, [p.request for p in live])
                    except asyncio.CancelledError:  # close(drain=False) while the model ran
                        results = [ShuttingDown("server is shutting down")] * len(live)
                        self._resolve(live, results)
                        raise
                    except Exception as err:  # the batch failed: only its own requests hear of it
                        results = [err] * len(live)
                    self.batch_sizes[len(live)] += 1
                    if self.on_batch is not None:
                        self.on_batch(len(live), time.perf_counter() - started)
                    self._resolve(live, results)
            finally:
                for _ in batch:
                    self._queue.task_done()

    @staticmethod
    def _resolve(live: list[_Pending], results: Sequence) -> None:
        for pending, result in zip(live, results):
            if pending.future.done():  # cancelled or timed out while the model ran
                continue
            if isinstance(result, BaseException):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)

    def _call(self, requests: list[Req]) -> Sequence[Res]:
        """Run the batch function (in the worker thread) and check it answered everyone."""
        results = self.batch_fn(requests)
        if len(results) != len(requests):
            raise RuntimeError(f"batch function returned {len(results)} results for {len(requests)} requests")
        return results
