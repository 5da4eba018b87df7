"""The micro-batcher: batch formation, own results, failure isolation, backpressure,
timeouts, cancellation and draining. Timing is only ever used as an upper bound that a
correct batcher meets by a wide margin (no speed claims here)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from workbench.serving.batcher import BatcherConfig, MicroBatcher, Overloaded, RequestTimeout, ShuttingDown


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


class Recorder:
    """A batch function: doubles each request, records its batches, can be held shut."""

    def __init__(self, *, fail_on=None, gate: threading.Event | None = None):
        self.batches: list[list[int]] = []
        self.fail_on = fail_on
        self.gate = gate

    def __call__(self, requests):
        if self.gate is not None:
            self.gate.wait(10)
        self.batches.append(list(requests))
        if self.fail_on is not None and self.fail_on in requests:
            raise ValueError(f"bad request {self.fail_on}")
        return [2 * r for r in requests]


def test_config_rejects_bad_options():
    for bad in (dict(max_batch_size=0), dict(max_queue=0), dict(max_wait_ms=-1), dict(timeout_ms=0)):
        with pytest.raises(ValueError):
            BatcherConfig(**bad)


def test_each_request_gets_its_own_result_and_batches_fill_up():
    fn = Recorder()

    async def main():
        async with MicroBatcher(fn, BatcherConfig(max_batch_size=8, max_wait_ms=200, timeout_ms=None)) as b:
            return await asyncio.gather(*[b.submit(i) for i in range(20)]), b.batch_sizes

    results, sizes = run(main())
    assert results == [2 * i for i in range(20)]
    # all 20 were queued before the worker ran: full batches, the rest in one
    assert [len(x) for x in fn.batches] == [8, 8, 4]
    assert sorted(r for batch in fn.batches for r in batch) == list(range(20))  # none lost or duplicated
    assert sizes == {8: 2, 4: 1}


def test_a_lone_request_leaves_after_max_wait():
    fn = Recorder()

    async def main():
        async with MicroBatcher(fn, BatcherConfig(max_batch_size=64, max_wait_ms=20)) as b:
            started = time.perf_counter()
            result = await b.submit(5)
            return result, time.perf_counter() - started

    result, waited = run(main())
    assert result == 10 and fn.batches == [[5]]
    assert waited < 5.0  # it did not wait for a full batch (that would never come)


def test_exception_reaches_only_the_failing_batch():
    gate = threading.Event()
    fn = Recorder(fail_on=3, gate=gate)

    async def main():
        async with MicroBatcher(fn, BatcherConfig(max_batch_size=4, max_wait_ms=1000)) as b:
            tasks = [asyncio.ensure_future(b.submit(i)) for i in range(12)]
            await asyncio.sleep(0)
            gate.set()
            return await asyncio.gather(*tasks, return_exceptions=True)

    results = run(main())
    assert [len(x) for x in fn.batches] == [4, 4, 4]
    assert all(isinstance(r, ValueError) for r in results[:4])  # batch [0..3] holds request 3
    assert results[4:] == [2 * i for i in range(4, 12)]


def test_per_request_exceptions_in_the_result_list():
    async def main():
        fn = lambda reqs: [KeyError(r) if r == 1 else r for r in reqs]
        async with MicroBatcher(fn, BatcherConfig(max_batch_size=4, max_wait_ms=50)) as b:
            return await asyncio.gather(*[b.submit(i) for i in range(3)], return_exceptions=True)

    results = run(main())
    assert results[0] == 0 and isinstance(results[1], KeyError) and results[2] == 2


def test_wrong_number_of_results_fails_the_batch_not_the_batcher():
    calls = []

    def fn(reqs):
        calls.append(reqs)
        return reqs[:-1] if len(calls) == 1 else reqs

    async def main():
        async with MicroBatcher(fn, BatcherConfig(max_batch_size=2, max_wait_ms=50)) as b:
            first = await asyncio.gather(b.submit(1), b.submit(2), return_exceptions=True)
            return first, await b.submit(3)

    first, later = run(main())
    assert all(isinstance(r, RuntimeError) for r in first) and later == 3


def test_full_queue_rejects_at_once_and_every_request_is_accounted_for():
    gate = threading.Event()
    fn = Recorder(gate=gate)

    async def main():
        async with MicroBatcher(fn, BatcherConfig(max_batch_size=2, max_wait_ms=0, max_queue=4, timeout_ms=None)) as b:
            first = asyncio.ensure_future(b.submit(0))
            await asyncio.sleep(0.05)  # the worker holds request 0 inside the (blocked) model
            tasks = [asyncio.ensure_future(b.submit(i)) for i in range(1, 11)]
            await asyncio.sleep(0.05)
            rejected = [t for t in tasks if t.done() and isinstance(t.exception(), Overloaded)]
            gate.set()
            results = await asyncio.gather(first, *tasks, return_exceptions=True)
            return rejected, results

    rejected, results = run(main())
    answered = [r for r in results if not isinstance(r, Exception)]
    assert len(rejected) == 6  # 4 queued behind the one being computed, 6 turned away
    assert len(answered) + len(rejected) == 11 and sorted(answered) == [0, 2, 4, 6, 8]


def test_timeout_raises_and_the_batch_skips_the_expired_request():
    gate = threading.Event()
    fn = Recorder(gate=gate)

    async def main():
        async with MicroBatcher(fn, BatcherConfig(max_batch_size=1, max_wait_ms=0, timeout_ms=50)) as b:
            blocker = asyncio.ensure_future(b.submit(1))
            await asyncio.sleep(0.01)
            with pytest.raises(RequestTimeout):
                await b.submit(2)  # queued behind the blocked batch, expires there
            gate.set()
            with pytest.raises(RequestTimeout):
                await blocker  # expired while its batch was blocked
            return await b.submit(3)

    assert run(main()) == 6
    assert [2] not in fn.batches  # never computed: it had expired before its batch formed


def test_cancelled_request_does_not_disturb_its_batch():
    gate = threading.Event()
    fn = Recorder(gate=gate)

    async def main():
        async with MicroBatcher(fn, BatcherConfig(max_batch_size=4, max_wait_ms=1000, timeout_ms=None)) as b:
            tasks = [asyncio.ensure_future(b.submit(i)) for i in range(4)]
            await asyncio.sleep(0.05)  # batch formed, model blocked
            tasks[1].cancel()  # the client went away mid-request
            gate.set()
            return await asyncio.gather(*tasks, return_exceptions=True)

    results = run(main())
    assert isinstance(results[1], asyncio.CancelledError)
    assert [results[0], results[2], results[3]] == [0, 4, 6]


def test_close_drains_queued_requests_then_refuses_new_ones():
    gate = threading.Event()
    fn = Recorder(gate=gate)

    async def main():
        b = await MicroBatcher(fn, BatcherConfig(max_batch_size=2, max_wait_ms=0, timeout_ms=None)).start()
        tasks = [asyncio.ensure_future(b.submit(i)) for i in range(7)]
        await asyncio.sleep(0.02)
        closing = asyncio.ensure_future(b.close())
        await asyncio.sleep(0.02)
        with pytest.raises(ShuttingDown):
            await b.submit(99)
        gate.set()
        await closing
        return await asyncio.gather(*tasks)

    assert run(main()) == [2 * i for i in range(7)]


def test_close_without_drain_fails_queued_requests_explicitly():
    gate = threading.Event()
    fn = Recorder(gate=gate)

    async def main():
        b = await MicroBatcher(fn, BatcherConfig(max_batch_size=1, max_wait_ms=0, timeout_ms=None)).start()
        tasks = [asyncio.ensure_future(b.submit(i)) for i in range(3)]
        await asyncio.sleep(0.02)
        closing = asyncio.ensure_future(b.close(drain=False))
        await asyncio.sleep(0.02)
        gate.set()
        await closing
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = run(main())
    assert all(isinstance(r, ShuttingDown) for r in results)  # every request hears back


def test_submit_before_start_is_refused():
    async def main():
        with pytest.raises(ShuttingDown):
            await MicroBatcher(Recorder()).submit(1)

    run(main())


# -- the priority lane ------------------------------------------------------------------


class HeldOnNegative(Recorder):
    """Doubles each request; a batch holding a negative request waits for ``gate``."""

    def __call__(self, requests):
        if any(r < 0 for r in requests):
            self.gate.wait(10)
        self.batches.append(list(requests))
        return [2 * r for r in requests]


def test_priority_request_passes_a_held_main_lane_and_does_not_wait_for_company():
    fn = HeldOnNegative(gate=threading.Event())

    async def main():
        config = BatcherConfig(max_batch_size=8, max_wait_ms=5000, timeout_ms=None)
        async with MicroBatcher(fn, config) as b:
            held = asyncio.ensure_future(b.submit(-1))  # the main lane's batch waits 5 s for company
            queued = asyncio.ensure_future(b.submit(3))
            await asyncio.sleep(0.02)
            started = time.perf_counter()
            urgent = await b.submit(7, priority=True)
            waited = time.perf_counter() - started
            assert not held.done() and not queued.done()
            fn.gate.set()
            return urgent, waited, await held, await queued, b.priority_batches

    urgent, waited, held, queued, priority_batches = run(main())
    assert (urgent, held, queued) == (14, -2, 6)
    assert waited < 2.0  # neither the 5 s max wait nor the held batch
    assert [7] in fn.batches and priority_batches == 1


def test_without_a_priority_lane_priority_requests_queue_like_the_rest():
    fn = HeldOnNegative(gate=threading.Event())

    async def main():
        config = BatcherConfig(max_batch_size=1, max_wait_ms=0, timeout_ms=None, priority_lane=False)
        async with MicroBatcher(fn, config) as b:
            held = asyncio.ensure_future(b.submit(-1))
            await asyncio.sleep(0.02)
            urgent = asyncio.ensure_future(b.submit(7, priority=True))
            await asyncio.sleep(0.1)
            behind = not urgent.done()  # still behind the held batch
            fn.gate.set()
            return behind, await held, await urgent, b.priority_batches

    assert run(main()) == (True, -2, 14, 0)


def test_close_drains_both_lanes():
    gate = threading.Event()
    fn = Recorder(gate=gate)

    async def main():
        b = await MicroBatcher(fn, BatcherConfig(max_batch_size=2, max_wait_ms=0, timeout_ms=None)).start()
        tasks = [asyncio.ensure_future(b.submit(i, priority=i % 2 == 1)) for i in range(9)]
        await asyncio.sleep(0.02)
        closing = asyncio.ensure_future(b.close())
        await asyncio.sleep(0.02)
        gate.set()
        await closing
        return await asyncio.gather(*tasks), b.queue_depth

    results, depth = run(main())
    assert results == [2 * i for i in range(9)] and depth == 0
    assert sorted(r for batch in fn.batches for r in batch) == list(range(9))  # none lost or duplicated


# -- deadlines and admission by expected wait ----------------------------------------------


class Sleeper:
    """A batch function whose batch time the test controls: each call sleeps ``batch_s``."""

    def __init__(self, batch_s: float) -> None:
        self.batch_s = batch_s
        self.batches: list[list[int]] = []

    def __call__(self, requests):
        time.sleep(self.batch_s)
        self.batches.append(list(requests))
        return [2 * r for r in requests]


def test_the_deadline_counts_from_arrival_not_from_entering_the_batcher():
    fn = Sleeper(0.0)

    async def main():
        async with MicroBatcher(fn, BatcherConfig(max_batch_size=4, max_wait_ms=0, timeout_ms=300)) as b:
            started = time.perf_counter()
            with pytest.raises(RequestTimeout):  # it arrived 0.5 s ago: already past its 0.3 s
                await b.submit(1, arrived=started - 0.5)
            late = time.perf_counter() - started
            on_time = await b.submit(2, arrived=time.perf_counter() - 0.1)  # 0.2 s left: answered
            return late, on_time

    late, on_time = run(main())
    assert late < 0.1 and on_time == 4
    assert fn.batches == [[2]]  # the late one never reached the model


def test_a_request_whose_expected_wait_exceeds_its_deadline_is_refused_at_admission():
    """With 50 ms batches of one, a 120 ms deadline leaves room for two requests in the
    queue; the rest are refused at once (503) instead of timing out there (504)."""
    fn = Sleeper(0.05)

    async def main():
        config = BatcherConfig(max_batch_size=1, max_wait_ms=0, max_queue=1000, timeout_ms=120)
        async with MicroBatcher(fn, config) as b:
            await b.submit(0)  # one measured batch
            started = time.perf_counter()
            tasks = [asyncio.ensure_future(b.submit(i)) for i in range(1, 11)]
            await asyncio.sleep(0.01)
            refused = [t for t in tasks if t.done() and isinstance(t.exception(), Overloaded)]
            refused_after = time.perf_counter() - started
            results = await asyncio.gather(*tasks, return_exceptions=True)
            return len(refused), refused_after, results, b.expected_wait_s()

    refused, refused_after, results, idle_wait = run(main())
    answered = [r for r in results if not isinstance(r, Exception)]
    timeouts = [r for r in results if isinstance(r, RequestTimeout)]
    assert refused >= 7 and refused_after < 0.1  # refused at admission, not after waiting
    assert len(answered) >= 1 and len(timeouts) <= 1
    assert refused + len(answered) + len(timeouts) == 10
    assert 0.02 < idle_wait < 0.2  # one measured batch (~50 ms) when idle
