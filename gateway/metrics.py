"""Prometheus metrics of one gateway process: request latency, wake and freeze latency (the
transitions this process made, the idle sweeps of its worker included), and the operator's
stats as gauges."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric

from core.stats import Stats

# Box transitions take milliseconds to a few seconds; requests sub-millisecond and up.
_TRANSITION_BUCKETS = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30)
WAKE_PHASES = ("registry", "layer", "daemon")  # after "waking", in order
_REQUEST_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                    10, 30)


class _Refused:
    """burrow_knowledge_refused_total{reason}: a counter whose total lives in Redis (every
    worker counts there), shown as of the last collection."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("burrow_knowledge_refused", "proposals for the shared "
                                     "knowledge base refused, by reason", labels=["reason"])
        for reason, count in sorted(self.counts.items()):
            family.add_metric([reason], count)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Histogram(
            "burrow_http_request_duration_seconds", "HTTP requests by route and method",
            ["route", "method", "status"], buckets=_REQUEST_BUCKETS, registry=r)
        self.wakes = Histogram("burrow_box_wake_seconds", "wakes of frozen, archived or "
                               "failed boxes, until the box runs", buckets=_TRANSITION_BUCKETS,
                               registry=r)
        self.freezes = Histogram("burrow_box_freeze_seconds", "freezes, from the pre-freeze "
                                 "hook to the snapshot being stored", buckets=_TRANSITION_BUCKETS,
                                 registry=r)
        self.wake_phases = Histogram(
            "burrow_wake_phase_seconds", "a wake step by step: the lock and registry "
            "(registry), opening or restoring the layer (layer), the sandbox until its daemon "
            "is ready (daemon); on the agent route: catching the agent up (catch_up), its first "
            "answer (agent_answer) and the whole request (total)", ["phase"],
            buckets=_TRANSITION_BUCKETS, registry=r)
        self._marks: dict[str, float] = {}
        self.boxes = Gauge("burrow_boxes", "boxes per state", ["state"], registry=r)
        self.tenants = Gauge("burrow_tenants", "tenants", registry=r)
        self.warm_memory = Gauge("burrow_warm_memory_bytes", "memory of running and paused "
                                 "boxes", registry=r)
        self.storage = Gauge("burrow_storage_bytes", "local_layers: box layers on local disk; "
                             "logical: what the snapshots hold; stored: the deduplicated, "
                             "compressed snapshot store", ["kind"], registry=r)
        self.queue = Gauge("burrow_observation_queue_depth", "jobs due in the worker queue",
                           registry=r)
        self.backlog = Gauge("burrow_observation_backlog", "observed pairs waiting for their "
                             "tenant's agent", registry=r)
        self.dropped = Gauge("burrow_observation_dropped", "observed pairs dropped because "
                             "their tenant's backlog was full", registry=r)
        self.insights = Gauge("burrow_knowledge_insights", "insights in the shared knowledge "
                              "base", registry=r)
        self.refused = _Refused()
        r.register(self.refused)
        self.model_usage = Gauge("burrow_model_usage", "model calls and tokens from boxes, by "
                                 "provider (what: calls, input_tokens, output_tokens)",
                                 ["provider", "what"], registry=r)

    def phase(self, box_id: str, phase: str) -> None:
        """BoxManager.on_phase: a wake's steps, each timed from the one before it."""
        now = time.perf_counter()
        if phase == "waking":
            self._marks[box_id] = now
            return
        started = self._marks.get(box_id)
        if started is None or phase not in WAKE_PHASES:
            return
        self.wake_phases.labels(phase).observe(now - started)
        self._marks[box_id] = now
        if phase == WAKE_PHASES[-1]:
            del self._marks[box_id]

    def served_wake(self, catch_up_s: float, answer_s: float, total_s: float) -> None:
        """The agent route's part of a wake: delivering what the agent missed, its first
        answer, and the whole request."""
        self.wake_phases.labels("catch_up").observe(catch_up_s)
        self.wake_phases.labels("agent_answer").observe(answer_s)
        self.wake_phases.labels("total").observe(total_s)

    def transition(self, kind: str, seconds: float) -> None:
        """BoxManager.on_transition."""
        if kind == "wake":
            self.wakes.observe(seconds)
        elif kind == "freeze":
            self.freezes.observe(seconds)

    def render(self, stats: Stats) -> bytes:
        for state, count in stats.boxes.items():
            self.boxes.labels(state).set(count)
        self.tenants.set(stats.tenants)
        self.warm_memory.set(stats.warm_memory_bytes)
        self.storage.labels("local_layers").set(stats.storage["local_layer_bytes"])
        self.storage.labels("logical").set(stats.storage["logical_bytes"])
        self.storage.labels("stored").set(stats.storage["stored_bytes"])
        self.queue.set(stats.observations["queue_depth"])
        self.backlog.set(stats.observations["backlog"])
        self.dropped.set(stats.observations.get("dropped", 0))
        self.insights.set(stats.knowledge["insights"])
        self.refused.counts = dict(stats.knowledge.get("refused", {}))
        for name, value in stats.models.items():
            provider, _, what = name.partition(":")
            self.model_usage.labels(provider, what).set(value)
        return generate_latest(self.registry)
