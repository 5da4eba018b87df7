"""An asyncio dynamic micro-batcher, small enough to read in one sitting.

Requests enter a bounded queue. One worker task takes the oldest request and keeps
collecting until the batch holds ``max_batch_size`` requests or the oldest one has waited
``max_wait_ms``; the batch function then runs in a worker thread, so the event loop keeps
accepting requests (which form the next batch) while the model computes. Each request's
future gets its own result; an exception raised by the batch function reaches exactly
the requests of that batch, and the worker goes on with the next one.

- Priority lane: ``submit(request, priority=True)`` (the service uses it for the first
  read after a user's update) goes to a second queue with its own worker thread, and
  its batch leaves at once -- it waits neither for company nor for the batch the
  main lane is computing. With ``priority_lane=False`` every request takes the main lane.
- Backpressure: a full queue raises :class:`Overloaded` at once (HTTP 503), never waits.
- Deadline: a request not answered within ``timeout_ms`` of its *arrival* (``submit(...,
  arrived=t)``, the time it reached the server; by default the call itself) raises
  :class:`RequestTimeout` (HTTP 504); one already past it is refused without queueing.
- Admission by time: a request whose expected wait -- the batches ahead of it in its
  lane, the one being computed included, times the lane's measured batch time (a moving
  average) -- already exceeds what is left of its deadline raises :class:`Overloaded` at
  once, rather than timing out in the queue: shed early, not late.
- Cancellation (a client that went away, a timeout): the request is skipped if its batch
  has not started, and its result is dropped if it has; no other request notices.
- :meth:`MicroBatcher.close` stops intake (:class:`ShuttingDown`) and, by default,
  answers everything already queued before it returns.

``max_batch_size=1`` is per-request serving through the same machinery: the baseline.
The batch function must tolerate two calls at once (one per lane) when the priority
lane is used.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

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
    queued request waits for company; ``max_queue``: queued requests (per lane) before
    rejection; ``timeout_ms``: per-request deadline from arrival (None: no deadline);
    ``priority_lane``: serve ``priority=True`` requests in a lane of their own."""

    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_queue: int = 1024
    timeout_ms: float | None = 1000.0
    priority_lane: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.max_batch_size, int) and self.max_batch_size >= 1):
            raise ValueError(f"max_batch_size must be a positive integer, got {self.max_batch_size!r}")
        if not (isinstance(self.max_queue, int) and self.max_queue >= 1):
            raise ValueError(f"max_queue must be a positive integer, got {self.max_queue!r}")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms!r}")
        if self.timeout_ms is not None and not self.timeout_ms > 0:
            raise ValueError(f"timeout_ms must be > 0 or None, got {self.timeout_ms!r}")


#: weight of the latest batch in a lane's moving average of batch times
BATCH_TIME_WEIGHT = 0.3


@dataclass
class _Pending(Generic[Req]):
    request: Req
    future: asyncio.Future
    queued_at: float  # time.perf_counter() at submission


class _Lane:
    """One queue, one worker task, one worker thread; batches wait ``wait_s`` for company."""

    def __init__(self, name: str, max_queue: int, wait_s: float) -> None:
        self.name, self.wait_s = name, wait_s
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue(max_queue)
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"micro-batcher-{name}")
        self.worker: asyncio.Task | None = None
        self.busy = False  # a batch is being computed
        self.batch_s: float | None = None  # moving average of batch times (None: none measured yet)

    def measured(self, seconds: float) -> None:
        """Fold one batch time into the moving average."""
        average = self.batch_s
        self.batch_s = seconds if average is None else average + BATCH_TIME_WEIGHT * (seconds - average)


class MicroBatcher(Generic[Req, Res]):
    """Dynamic batching of ``submit(request)`` calls into ``batch_fn(requests)`` calls.

    Use ``async with MicroBatcher(fn, config) as b: result = await b.submit(req)``, or
    :meth:`start` / :meth:`close`. ``on_batch(size, seconds)`` is called (on the event
    loop) after every model call, from either lane.
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
        self.batch_sizes: Counter[int] = Counter()  # batch size -> number of model calls (both lanes)
        self.priority_batches = 0  # model calls made by the priority lane
        self._lanes: dict[str, _Lane] = {}
        self._accepting = False

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> MicroBatcher[Req, Res]:
        """Create the lanes' queues, worker threads and worker tasks (on the running loop)."""
        if self._lanes:
            raise RuntimeError("MicroBatcher already started")
        loop = asyncio.get_running_loop()
        self._lanes["main"] = _Lane("main", self.config.max_queue, self.config.max_wait_ms / 1000)
        if self.config.priority_lane:
            self._lanes["priority"] = _Lane("priority", self.config.max_queue, 0.0)
        for lane in self._lanes.values():
            lane.worker = loop.create_task(self._run(lane), name=f"micro-batcher-{lane.name}")
        self._accepting = True
        return self

    async def close(self, *, drain: bool = True) -> None:
        """Stop taking requests; answer the queued ones (``drain``) or fail them with
        :class:`ShuttingDown`; then stop the workers and their threads."""
        self._accepting = False
        lanes = list(self._lanes.values())
        for lane in lanes:
            if drain:
                await lane.queue.join()
            else:
                while not lane.queue.empty():
                    item = lane.queue.get_nowait()
                    if not item.future.done():
                        item.future.set_exception(ShuttingDown("server is shutting down"))
                    lane.queue.task_done()
        for lane in lanes:
            lane.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lane.worker
            if drain:  # the worker thread is idle by now; wait without blocking the loop
                await asyncio.to_thread(lane.executor.shutdown, wait=True)
            else:  # a model call may still run: let the thread finish it on its own
                lane.executor.shutdown(wait=False)
        self._lanes = {}

    async def __aenter__(self) -> MicroBatcher[Req, Res]:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch, both lanes (not counting batches being computed)."""
        return sum(lane.queue.qsize() for lane in self._lanes.values())

    def expected_wait_s(self, *, priority: bool = False) -> float:
        """Seconds a request submitted now would wait for its answer: the batches ahead
        of it and its own (plus the one being computed) times the lane's measured batch
        time, plus the wait for company; 0 before any batch was measured."""
        if not self._lanes:
            return 0.0
        lane = self._lane(priority)
        if lane.batch_s is None:
            return 0.0
        batches = -(-(lane.queue.qsize() + 1) // self.config.max_batch_size) + lane.busy
        return batches * lane.batch_s + lane.wait_s

    def _lane(self, priority: bool) -> _Lane:
        return self._lanes["priority" if priority and "priority" in self._lanes else "main"]

    # -- requests -----------------------------------------------------------------------

    async def submit(self, request: Req, *, priority: bool = False, arrived: float | None = None) -> Res:
        """Queue one request and wait for its own result; ``priority`` takes the priority
        lane when the config has one; the deadline counts from ``arrived`` (a
        ``time.perf_counter()`` reading; None: now).

        Raises :class:`Overloaded` (queue full, or the expected wait exceeds what is left
        of the deadline), :class:`ShuttingDown`, :class:`RequestTimeout`, or whatever the
        batch function raised for its batch.
        """
        if not self._accepting:
            raise ShuttingDown("server is shutting down" if self._lanes else "batcher is not started")
        lane = self._lane(priority)
        now = time.perf_counter()
        left = self._time_left(now if arrived is None else arrived, now)
        if left is not None and (wait := self.expected_wait_s(priority=priority)) > left:
            raise Overloaded(f"expected wait {wait * 1e3:.0f} ms exceeds the {left * 1e3:.0f} ms left of its deadline")
        future = asyncio.get_running_loop().create_future()
        try:
            lane.queue.put_nowait(_Pending(request, future, now))
        except asyncio.QueueFull:
            raise Overloaded(f"queue full ({self.config.max_queue} requests waiting)") from None
        try:
            return await asyncio.wait_for(future, left)  # cancels the future on timeout
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no answer within {self.config.timeout_ms} ms") from None

    def _time_left(self, arrived: float, now: float) -> float | None:
        """Seconds left of the deadline of a request that arrived at ``arrived`` (None: no
        deadline); raises :class:`RequestTimeout` when none is left."""
        if self.config.timeout_ms is None:
            return None
        left = arrived + self.config.timeout_ms / 1000 - now
        if left <= 0:
            raise RequestTimeout(f"no answer within {self.config.timeout_ms} ms (spent before reaching the batcher)")
        return left

    # -- the workers ----------------------------------------------------------------------

    async def _collect(self, lane: _Lane) -> list[_Pending]:
        """The lane's next batch: the oldest request plus whatever arrives until the batch
        is full or the oldest has waited the lane's ``wait_s``."""
        first = await lane.queue.get()
        batch = [first]
        deadline = first.queued_at + lane.wait_s
        while len(batch) < self.config.max_batch_size:
            if not lane.queue.empty():
                batch.append(lane.queue.get_nowait())
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(lane.queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _run(self, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(lane)
            live = [p for p in batch if not p.future.done()]  # skip cancelled / timed out
            try:
                if live:
                    started, lane.busy = time.perf_counter(), True
                    try:
                        results = await loop.run_in_executor(lane.executor, self._call, [p.request for p in live])
                    except asyncio.CancelledError:  # close(drain=False) while the model ran
                        results = [ShuttingDown("server is shutting down")] * len(live)
                        self._resolve(live, results)
                        raise
                    except Exception as err:  # the batch failed: only its own requests hear of it
                        results = [err] * len(live)
                    finally:
                        lane.busy = False
                    seconds = time.perf_counter() - started
                    lane.measured(seconds)
                    self.batch_sizes[len(live)] += 1
                    self.priority_batches += lane.name == "priority"
                    if self.on_batch is not None:
                        self.on_batch(len(live), seconds)
                    self._resolve(live, results)
            finally:
                for _ in batch:
                    lane.queue.task_done()

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
        """Run the batch function (in a worker thread) and check it answered everyone."""
        results = self.batch_fn(requests)
        if len(results) != len(requests):
            raise RuntimeError(f"batch function returned {len(results)} results for {len(requests)} requests")
        return results
