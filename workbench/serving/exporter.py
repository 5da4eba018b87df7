"""What ``GET /metrics`` exports: a Prometheus collector that reads
:meth:`~workbench.serving.service.RecommendationService.snapshot` at every scrape, and
the in-flight gate of the HTTP admission control it reports on."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from workbench.serving.service import RecommendationService

#: how a recommendation request ended (one each), as counted by the service
OUTCOMES = ("ok", "rejected", "timeouts", "errors", "invalid", "shutting_down", "cancelled")
#: endpoint label -> the service counter of its requests refused for their input
INVALID_BY_ENDPOINT = {"recommend": "invalid", "interactions": "invalid_updates"}


@dataclass
class InFlight:
    """Recommendation requests inside the server (``count``) and the admission ``limit``."""

    limit: int
    count: int = 0


class Collector:
    """Reads :meth:`RecommendationService.snapshot` (and the in-flight ``gate``) at every
    scrape and yields the ``workbench_*`` metric families."""

    def __init__(self, service: RecommendationService, gate: InFlight) -> None:
        self.service, self.gate = service, gate

    def collect(self):
        snap = self.service.snapshot()
        yield from self._requests(snap["counts"])
        yield from self._cache(snap)
        yield from self._queue(snap)
        yield _batch_sizes(snap["batch_sizes"])
        yield _latency(snap)
        yield from _state(snap["state"], snap["counts"])

    def _requests(self, counts: dict):
        requests = CounterMetricFamily("workbench_requests", "Recommendation requests by outcome", labels=["outcome"])
        for outcome in OUTCOMES:
            requests.add_metric([outcome], counts.get(outcome, 0))
        yield requests
        invalid = CounterMetricFamily(
            "workbench_invalid_requests", "Requests refused for their input (422/404) by endpoint", labels=["endpoint"]
        )
        for endpoint, counter in INVALID_BY_ENDPOINT.items():
            invalid.add_metric([endpoint], counts.get(counter, 0))
        yield invalid
        answers = CounterMetricFamily(
            "workbench_answers", "Answered requests by where the answer came from", labels=["source"]
        )
        cached, cold = counts.get("cache_hits", 0), counts.get("cold_start", 0)
        for source, value in (("cache", cached), ("cold_start", cold), ("model", counts.get("ok", 0) - cached - cold)):
            answers.add_metric([source], value)
        yield answers
        yield CounterMetricFamily("workbench_updates", "Online interactions applied", value=counts.get("updates", 0))
        yield CounterMetricFamily(
            "workbench_shed", "Requests rejected (503) at admission, before routing", value=counts.get("shed", 0)
        )
        yield CounterMetricFamily(
            "workbench_priority_requests",
            "Requests sent to the priority lane (first read after an update)",
            value=counts.get("priority", 0),
        )

    def _cache(self, snap: dict):
        yield CounterMetricFamily("workbench_cache_hits", "Cache hits", value=snap["cache_hits"])
        yield CounterMetricFamily("workbench_cache_misses", "Cache misses", value=snap["cache_misses"])
        yield GaugeMetricFamily("workbench_cache_hit_rate", "Cache hits / lookups", value=snap["cache_hit_rate"])
        yield GaugeMetricFamily("workbench_cache_entries", "Answers in the cache", value=snap["cache_entries"])
        yield GaugeMetricFamily(
            "workbench_cache_items", "Top-k items held by the cached answers", value=snap["cache_items"]
        )
        yield GaugeMetricFamily(
            "workbench_cache_max_items", "The cache's cap on items held", value=snap["cache_max_items"]
        )

    def _queue(self, snap: dict):
        yield GaugeMetricFamily("workbench_queue_depth", "Requests waiting for a batch", value=snap["queue_depth"])
        yield GaugeMetricFamily(
            "workbench_expected_wait_seconds",
            "Expected wait of a request arriving now (main lane), from measured batch times",
            value=snap["expected_wait_s"],
        )
        yield GaugeMetricFamily(
            "workbench_in_flight", "Recommendation requests inside the server", value=self.gate.count
        )
        yield CounterMetricFamily(
            "workbench_priority_batches", "Model calls made by the priority lane", value=snap["priority_batches"]
        )


def _batch_sizes(sizes: dict[int, int]) -> HistogramMetricFamily:
    bounds = [2**i for i in range(0, max(sizes, default=1).bit_length() + 1)]
    buckets = [(str(b), sum(n for s, n in sizes.items() if s <= b)) for b in bounds]
    return HistogramMetricFamily(
        "workbench_batch_size",
        "Requests per model call",
        buckets=[*buckets, ("+Inf", sum(sizes.values()))],
        sum_value=sum(s * n for s, n in sizes.items()),
    )


def _latency(snap: dict) -> Metric:
    latency = Metric("workbench_request_latency_seconds", "Answered-request latency (recent window)", "summary")
    for q, value in snap["latency_quantiles"].items():
        latency.add_sample("workbench_request_latency_seconds", {"quantile": str(q)}, value)
    latency.add_sample("workbench_request_latency_seconds_count", {}, snap["counts"].get("ok", 0))
    latency.add_sample("workbench_request_latency_seconds_sum", {}, snap["latency_seconds"])
    return latency


def _state(state: dict, counts: dict):
    """The state backend: which one and whether it answers, operations, errors and
    latency per operation (Redis: ``read`` by a batch, ``update``, ``check`` of a cache
    hit or an unknown user), degraded reads, write conflicts; and the service's side:
    updates refused (503), update messages heard, cached answers found stale."""
    info = GaugeMetricFamily("workbench_state_up", "1 while the state backend answers", labels=["backend"])
    info.add_metric([state["backend"]], float(state["ok"]))
    yield info
    ops = CounterMetricFamily("workbench_state_operations", "State backend operations", labels=["op"])
    errors = CounterMetricFamily("workbench_state_errors", "State backend operations that failed", labels=["op"])
    for op in ("read", "update", "check"):
        ops.add_metric([op], state["operations"].get(op, 0))
        errors.add_metric([op], state["errors"].get(op, 0))
    yield ops
    yield errors
    latency = Metric("workbench_state_latency_seconds", "State backend latency per operation (recent)", "summary")
    for op, quantiles in state["latency_quantiles"].items():
        for q, value in quantiles.items():
            latency.add_sample("workbench_state_latency_seconds", {"op": op, "quantile": str(q)}, value)
    yield latency
    for name, value, text in (
        ("degraded_reads", state.get("degraded_reads", 0), "Reads answered from last known state (backend down)"),
        ("conflicts", state.get("conflicts", 0), "Updates recomputed after a concurrent write to the same user"),
        ("updates_unavailable", counts.get("updates_unavailable", 0), "Updates refused (503): backend down"),
        ("invalidations", counts.get("invalidations", 0), "Update messages that dropped a user's cached answers"),
        ("cache_stale", counts.get("cache_stale", 0), "Cache hits dropped: the user changed on another replica"),
    ):
        yield CounterMetricFamily(f"workbench_state_{name}", text, value=value)
