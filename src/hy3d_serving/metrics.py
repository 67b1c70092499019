"""Custom Prometheus metrics of the stages, through the Python backend's metrics API (port 8002, /metrics).

Next to Triton's own ``nv_*`` metrics: how long each phase of each stage takes (a histogram), how many
requests were cancelled and where, and which engine each stage runs. Outside Triton (tests, benchmarks)
the recorder does nothing.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

PHASE_DURATION_METRIC = "hy3d_phase_duration_seconds"
CANCELLED_METRIC = "hy3d_cancelled_requests_total"
ENGINE_METRIC = "hy3d_engine_info"
#: Upper bounds of the phase-duration histogram buckets, in seconds (CPU built-ins to GPU neural runs).
PHASE_DURATION_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

_DESCRIPTIONS = {
    PHASE_DURATION_METRIC: "Duration of one phase of one request in a stage, seconds (labels: model, phase)",
    CANCELLED_METRIC: "Requests cancelled by their client, by model and the phase they stopped at",
    ENGINE_METRIC: "Engine a model instance runs (value 1; labels: model, engine)",
}


class StageMetrics:
    """The metrics of one model (``model`` label); a no-op when ``pb_utils`` has no metrics API."""

    def __init__(self, pb_utils: Any, model: str):
        self.model = model
        self._families: dict[str, Any] = {}
        self._metrics: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
        family_class = getattr(pb_utils, "MetricFamily", None)
        if family_class is None:
            return
        kinds = {PHASE_DURATION_METRIC: family_class.HISTOGRAM, CANCELLED_METRIC: family_class.COUNTER,
                 ENGINE_METRIC: family_class.GAUGE}
        for name, kind in kinds.items():
            self._families[name] = family_class(name=name, description=_DESCRIPTIONS[name], kind=kind)

    def observe_phase(self, phase: str, seconds: float) -> None:
        """Record that ``phase`` of one request took ``seconds``."""
        metric = self._metric(PHASE_DURATION_METRIC, {"phase": phase}, buckets=list(PHASE_DURATION_BUCKETS_S))
        if metric is not None:
            metric.observe(seconds)

    def count_cancellation(self, phase: str) -> None:
        """Count one request cancelled at ``phase`` (``""``: before its first phase, in the queue)."""
        metric = self._metric(CANCELLED_METRIC, {"phase": phase or "queued"})
        if metric is not None:
            metric.increment(1)

    def set_engine(self, engine: str) -> None:
        """Publish the engine this model instance runs."""
        metric = self._metric(ENGINE_METRIC, {"engine": engine})
        if metric is not None:
            metric.set(1)

    def _metric(self, name: str, labels: dict[str, str], **options: Any) -> Any:
        family = self._families.get(name)
        if family is None:
            return None
        labels = {"model": self.model, **labels}
        key = (name, tuple(sorted(labels.items())))
        if key not in self._metrics:
            try:
                self._metrics[key] = family.Metric(labels=labels, **options)
            except Exception:  # a metric must never fail a request
                logger.exception("cannot create metric %s %s", name, labels)
                self._metrics[key] = None
        return self._metrics[key]
