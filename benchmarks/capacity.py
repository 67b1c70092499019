"""Capacity model of hy3d-triton on Kubernetes: a discrete-event simulation of pods, queues and the HPA.

What it simulates (docs/deploy.md "Sizing" explains how to read the results):

* **Arrivals**: Poisson, a mix of textured / untextured requests and octree resolutions.
* **Service times** per stage (preprocess, shape, paint) from a profile: the GPU *targets* of issue 11
  (``--service-times gpu-targets``, the default: shape 5 s and texture 20 s at R 256; targets, not
  measurements), or a benchmark JSON file of ``benchmarks/results/`` (``serving.json``: the stages as
  measured on CPU; the ``bench_gpu.json`` of issue 11 once measured; or a profile file of this script's
  own format). The R-dependent part of the shape time scales as ``(R / 256) ** exponent``; the exponent
  is fitted from ``bench_shape.json``'s volume-decoding timings (``--octree-scaling``) or set.
  Each request's time is the profile's mean times a lognormal factor (``--service-cv``).
* **A pod** runs one instance of each stage: shape of request n + 1 runs while request n is painted.
  ``single-gpu`` puts both stages on one GPU, so two running stages slow each other down
  (``--shared-gpu-slowdown``); ``split-gpu`` gives each stage its own GPU. Each stage queue holds at most
  ``HY3D_MAX_QUEUE_SIZE`` requests: one more at shape is refused (HTTP 503) and the client retries with
  backoff; one more at paint fails the request after its shape was made (``refused_after_shape``).
* **Balancing**: per request, to the pod with the fewest outstanding requests (an L7 least-request
  balancer), or ``central`` (one FIFO queue, the M/M/c reference the tests check).
* **The HPA** of ``deploy/kubernetes/components/autoscaling``: per pod, the average of
  ``nv_inference_pending_request_count`` (summed over a pod's stages) and of the busiest stage's busy
  fraction (rate of ``nv_inference_compute_infer_duration_us``), each against its target, the larger
  proposal wins; from Prometheus scrapes, with its tolerance, stabilisation windows and rate policies.
  New pods take ``--pod-start-s`` to become ready, removed pods drain their accepted requests first.

Reports p50/p95 latency, queue time, GPU utilisation and replicas against arrival rate, the replicas
needed at 60 and 600 requests/hour for p95 <= 5 min, and a load-step scenario; plots
``docs/capacity.png`` and ``docs/capacity_hpa.png``; writes ``benchmarks/results/capacity.json`` and
``capacity.md``.

    .venv/bin/python benchmarks/capacity.py [--service-times gpu-targets|FILE] [--quick]
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

#: Octree resolution at which a profile's shape time is given (the contract default).
REFERENCE_OCTREE = 256
#: Latency objective the sizing answers: p95 end-to-end latency in seconds.
SLO_P95_S = 300.0
#: Arrival rates (requests per hour) the sizing answers for.
QUESTION_RATES_PER_HOUR = (60.0, 600.0)
#: Triton queue bound per stage (``HY3D_MAX_QUEUE_SIZE``'s default).
MAX_QUEUE_SIZE = 8
#: Client retries of a refused (503) request and their backoff (hy3d_client's defaults).
RETRY_ATTEMPTS = 4
RETRY_INITIAL_DELAY_S = 1.0
RETRY_MAX_DELAY_S = 30.0
#: Simulated seconds after the last arrival within which the accepted requests must finish.
DRAIN_LIMIT_S = 6 * 3600.0

#: The GPU goals of issue 11 on one H100/H200 at the defaults: TARGETS, NOT MEASUREMENTS. The split of
#: the 5 s shape time into a fixed part (DINO, denoising, post-processing) and a part that grows with R
#: (volume decoding, marching cubes) is an assumption; so are the untextured export time and the
#: pod start time (image pull of a ~40 GB image from a nearby registry, weights load, warm-up).
GPU_TARGETS: dict[str, Any] = {
    "name": "gpu-targets",
    "kind": "target",
    "source": "issue 11 goals on one H100/H200 (shape <= 5 s, texture <= 20 s at R 256); not measured",
    "preprocess_s": 0.2,
    "shape_fixed_s": 2.5,
    "shape_scaled_s": 2.5,
    "octree_exponent": 2.0,
    "paint_textured_s": 20.0,
    "paint_untextured_s": 0.5,
    "pod_start_s": 420.0,
}


# ---------------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class ServiceProfile:
    """Mean service time of each stage for one request type, in seconds."""

    name: str
    kind: str  # "target" or "measured"
    source: str
    preprocess_s: float
    shape_fixed_s: float
    shape_scaled_s: float  # at REFERENCE_OCTREE; scales as (R / REFERENCE_OCTREE) ** octree_exponent
    octree_exponent: float
    paint_textured_s: float
    paint_untextured_s: float
    pod_start_s: float

    def shape_s(self, octree_resolution: int) -> float:
        """Mean shape-stage seconds at ``octree_resolution``."""
        return self.shape_fixed_s + self.shape_scaled_s * (octree_resolution / REFERENCE_OCTREE) ** self.octree_exponent

    def paint_s(self, textured: bool) -> float:
        """Mean paint-stage seconds (texturing + export, or export only)."""
        return self.paint_textured_s if textured else self.paint_untextured_s

    def scaled(self, factor: float) -> ServiceProfile:
        """The same profile with every service time multiplied by ``factor`` (pod start unchanged)."""
        return replace(self, preprocess_s=self.preprocess_s * factor, shape_fixed_s=self.shape_fixed_s * factor,
                       shape_scaled_s=self.shape_scaled_s * factor, paint_textured_s=self.paint_textured_s * factor,
                       paint_untextured_s=self.paint_untextured_s * factor)


def fit_octree_exponent(bench_shape: dict[str, Any]) -> float:
    """Log-log slope of dense volume decoding time against R, from ``bench_shape.json``'s tiny stages.

    Raises ``ValueError`` when the file holds fewer than two such timings.
    """
    points = []
    for stage in bench_shape.get("tiny", {}).get("stages", []):
        name = stage.get("stage", "")
        if name.startswith("volume decode dense, R="):
            points.append((int(name.rsplit("=", 1)[1]), float(stage["ours_s"])))
    if len(points) < 2:
        raise ValueError("bench_shape.json: need 'volume decode dense, R=...' timings at two resolutions at least")
    r, t = np.log([p[0] for p in points]), np.log([p[1] for p in points])
    return float(np.polyfit(r, t, 1)[0])


#: Stage names of issue 11's ``bench_gpu.json`` that belong to the shape stage (matched as substrings).
SHAPE_PHASE_WORDS = ("dino", "denois", "volume", "marching", "post")
#: ... and those that make an untextured request's paint stage (export only).
EXPORT_PHASE_WORDS = ("export",)


def profile_from_json(data: dict[str, Any], source: str, octree_exponent: float | None) -> ServiceProfile:
    """A profile from one of the JSON formats of ``benchmarks/results/`` (see the module docstring).

    Raises ``ValueError`` naming the file when its format is not one of them.
    """
    if "profile" in data:  # this script's own format
        fields = dict(GPU_TARGETS, **data["profile"])
        fields["source"] = fields.get("source") or source
        return ServiceProfile(**fields)
    exponent = GPU_TARGETS["octree_exponent"] if octree_exponent is None else octree_exponent
    if "medians_s" in data:  # bench_serving.py: the stages measured in-process
        medians = data["medians_s"]
        octree = int(data.get("setup", {}).get("octree_resolution", REFERENCE_OCTREE))
        shape_ref = medians["shape_s"] / (octree / REFERENCE_OCTREE) ** exponent
        overhead = max(0.0, medians.get("triton_overhead_s", 0.0))
        device = "gpu" if data.get("setup", {}).get("gpu") else "cpu"
        return ServiceProfile(
            name=f"serving-{device}", kind="measured", source=f"{source} (engine {data.get('engine', '?')})",
            preprocess_s=medians["preprocess_s"] + overhead, shape_fixed_s=0.0, shape_scaled_s=shape_ref,
            octree_exponent=exponent, paint_textured_s=medians["paint_export_s"],
            # bench_serving.py times textured requests only; an untextured one is the export alone.
            paint_untextured_s=0.1 * medians["paint_export_s"], pod_start_s=float(data.get("startup_s", 60.0)),
        )
    if "stages" in data and isinstance(data["stages"], dict):  # bench_gpu.py (issue 11)
        shape = paint = export = 0.0
        for name, entry in data["stages"].items():
            seconds = float(entry["seconds"])
            lowered = name.lower()
            if any(word in lowered for word in SHAPE_PHASE_WORDS):
                shape += seconds
            elif any(word in lowered for word in EXPORT_PHASE_WORDS):
                export += seconds
            else:
                paint += seconds
        return ServiceProfile(
            name=f"bench-gpu-{data.get('device', '?')}", kind="measured", source=source, preprocess_s=GPU_TARGETS["preprocess_s"],
            shape_fixed_s=0.5 * shape, shape_scaled_s=0.5 * shape, octree_exponent=exponent,
            paint_textured_s=paint + export, paint_untextured_s=max(export, 0.01), pod_start_s=GPU_TARGETS["pod_start_s"],
        )
    raise ValueError(f"{source}: not a profile, serving.json or bench_gpu.json format")


def load_profile(spec: str, octree_scaling: Path | None = None) -> ServiceProfile:
    """``gpu-targets`` or the path of a JSON file; ``octree_scaling`` (bench_shape.json) sets the R exponent."""
    exponent = fit_octree_exponent(json.loads(octree_scaling.read_text())) if octree_scaling else None
    if spec == GPU_TARGETS["name"]:
        fields = dict(GPU_TARGETS)
        if exponent is not None:
            fields["octree_exponent"] = exponent
        return ServiceProfile(**fields)
    path = Path(spec)
    return profile_from_json(json.loads(path.read_text()), path.name, exponent)


@dataclass(frozen=True)
class RequestMix:
    """What users send: the textured share and the distribution of OCTREE_RESOLUTION."""

    textured_fraction: float = 0.8
    octree_weights: tuple[tuple[int, float], ...] = ((128, 0.2), (256, 0.6), (384, 0.1), (512, 0.1))

    @classmethod
    def parse(cls, textured_fraction: float, octree_mix: str) -> RequestMix:
        """From ``--textured-fraction`` and ``--octree-mix R:weight,R:weight``."""
        pairs = []
        for item in octree_mix.split(","):
            resolution, weight = item.split(":")
            pairs.append((int(resolution), float(weight)))
        if not 0.0 <= textured_fraction <= 1.0 or not pairs or any(w < 0 for _, w in pairs):
            raise ValueError("--textured-fraction must be in [0, 1]; --octree-mix weights >= 0")
        return cls(textured_fraction, tuple(pairs))


@dataclass(frozen=True)
class HpaPolicy:
    """The HorizontalPodAutoscaler of deploy/kubernetes/components/autoscaling (a test keeps them equal)."""

    target_pending_per_pod: float = 2.0
    #: Second metric: busy fraction of the pod's busiest stage (rate of nv_inference_compute_infer_duration_us
    #: over busy_window_s). It keeps pods that are busy without a queue from being scaled away.
    target_busy_fraction: float = 0.8
    busy_window_s: float = 120.0
    min_replicas: int = 1
    max_replicas: int = 16
    tolerance: float = 0.1  # kube-controller-manager --horizontal-pod-autoscaler-tolerance
    sync_period_s: float = 15.0  # --horizontal-pod-autoscaler-sync-period
    scrape_interval_s: float = 30.0  # PodMonitor interval
    scale_up_window_s: float = 60.0
    scale_up_pods: int = 2
    scale_up_percent: float = 100.0
    scale_up_period_s: float = 600.0  # >= pod start: wait for the last pods before doubling again
    scale_down_window_s: float = 900.0
    scale_down_pods: int = 1
    scale_down_period_s: float = 300.0


#: GPUs per pod and whether the stages share one, per overlay.
LAYOUTS = {"single-gpu": 1, "split-gpu": 2}


@dataclass(frozen=True)
class SimConfig:
    """One simulation run."""

    profile: ServiceProfile
    mix: RequestMix = RequestMix()
    layout: str = "single-gpu"
    rate_per_hour: float = 60.0
    duration_s: float = 12 * 3600.0
    warmup_s: float = 3600.0  # requests arriving earlier are left out of the statistics
    replicas: int | None = 1  # fixed replica count; None = the HPA decides
    hpa: HpaPolicy = HpaPolicy()
    shared_gpu_slowdown: float = 1.5  # single-gpu: each of two concurrent stages runs this much slower
    service_cv: float = 0.15  # coefficient of variation of each service time (lognormal)
    exponential_service: bool = False  # exponential service times (the M/M/c check)
    balancing: str = "least-request"  # or "central"
    max_queue_size: int = MAX_QUEUE_SIZE  # 0 = unbounded
    drain_timeout_s: float = 600.0
    rate_schedule: tuple[tuple[float, float], ...] = ()  # (start_s, rate_per_hour) steps; overrides rate
    seed: int = 1
    record_timeline: bool = False


# ---------------------------------------------------------------------------------------------------
# The simulation


@dataclass
class Request:
    id: int
    arrival_s: float
    textured: bool
    octree: int
    attempts: int = 0
    queued_s: float = 0.0  # time spent waiting: stage queues, central queue, client backoff
    wait_since_s: float = 0.0
    service_s: float = 0.0


@dataclass
class Job:
    """A request running in one stage: work left (seconds at full speed) and its completion token."""

    request: Request
    stage: str
    remaining_s: float
    uses_gpu: bool
    rate: float = 1.0
    started_s: float = 0.0
    updated_s: float = 0.0
    token: int = 0


@dataclass
class Pod:
    id: int
    gpus: int
    created_s: float
    ready_s: float
    state: str = "starting"  # starting -> ready -> draining -> gone
    deleted_s: float | None = None
    drain_started_s: float = 0.0
    queues: dict[str, deque] = field(default_factory=lambda: {"shape": deque(), "paint": deque()})
    running: dict[str, Job | None] = field(default_factory=lambda: {"shape": None, "paint": None})
    gpu_busy_s: float = 0.0
    #: Compute seconds of each stage's completed requests (Triton adds a request's time when it ends).
    compute_s: dict[str, float] = field(default_factory=lambda: {"shape": 0.0, "paint": 0.0})
    compute_samples: deque = field(default_factory=deque)  # (t, shape compute_s, paint compute_s) per scrape
    gpu_active: list[int] = field(default_factory=list)  # running GPU jobs per GPU
    gpu_since_s: list[float] = field(default_factory=list)

    def gpu_of(self, stage: str) -> int:
        return 0 if self.gpus == 1 or stage == "shape" else 1

    def pending(self) -> int:
        """What nv_inference_pending_request_count sums to over the pod's stages: waiting, not running."""
        return len(self.queues["shape"]) + len(self.queues["paint"])

    def outstanding(self) -> int:
        return self.pending() + sum(job is not None for job in self.running.values())


class Simulation:
    """Event loop over arrivals, stage completions, pod starts, scrapes and HPA syncs."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.now = 0.0
        self.events: list[tuple[float, int, str, Any]] = []
        self.sequence = 0
        self.pods: list[Pod] = []
        self.central: deque[Request] = deque()
        self.done: list[tuple[Request, float]] = []
        self.refused = 0
        self.failed = 0  # of the requests counted in the statistics (arrived after the warm-up)
        self.failed_total = 0
        self.refused_after_shape = 0  # of the requests counted in the statistics
        self.in_system = 0  # arrived, neither completed nor failed
        self.next_request_id = 0
        self.scrape: dict[int, int] = {}
        self.recommendations: deque[tuple[float, int]] = deque()
        self.scale_events: deque[tuple[float, int]] = deque()
        self.replica_area = 0.0
        self.replica_since = 0.0
        self.replica_max = 0
        self.timeline: list[tuple[float, int, int, int]] = []  # (t, replicas, ready, pending)

    # -- helpers ----------------------------------------------------------------------------------
    def push(self, time_s: float, kind: str, payload: Any = None) -> None:
        self.sequence += 1
        heapq.heappush(self.events, (time_s, self.sequence, kind, payload))

    def sample(self, mean_s: float) -> float:
        if mean_s <= 0:
            return 0.0
        if self.config.exponential_service:
            return self.rng.expovariate(1.0 / mean_s)
        cv = self.config.service_cv
        if cv <= 0:
            return mean_s
        sigma = math.sqrt(math.log(1.0 + cv * cv))
        return mean_s * self.rng.lognormvariate(-0.5 * sigma * sigma, sigma)

    def rate_at(self, time_s: float) -> float:
        rate = self.config.rate_per_hour
        for start_s, step_rate in self.config.rate_schedule:
            if time_s >= start_s:
                rate = step_rate
        return rate

    def live_pods(self) -> list[Pod]:
        """Pods the Deployment counts as replicas (starting or ready, not draining)."""
        return [pod for pod in self.pods if pod.state in ("starting", "ready")]

    def account_replicas(self) -> None:
        count = len(self.live_pods())
        until_s = min(self.now, self.config.duration_s)
        self.replica_area += count * max(0.0, until_s - self.replica_since)
        self.replica_since = max(self.replica_since, until_s)
        self.replica_max = max(self.replica_max, count)

    # -- pods -------------------------------------------------------------------------------------
    def add_pod(self, ready_now: bool) -> None:
        self.account_replicas()
        start_s = 0.0 if ready_now else self.config.profile.pod_start_s
        gpus = LAYOUTS[self.config.layout]
        pod = Pod(len(self.pods), gpus, self.now, self.now + start_s, gpu_active=[0] * gpus,
                  gpu_since_s=[self.now] * gpus)
        self.pods.append(pod)
        if ready_now:
            pod.state = "ready"
        else:
            self.push(pod.ready_s, "pod_ready", pod)
        self.account_replicas()

    def remove_pods(self, count: int) -> None:
        """Scale down: not-ready pods first, then the ready pods with the least work."""
        self.account_replicas()
        candidates = sorted(self.live_pods(), key=lambda p: (p.state == "ready", p.outstanding(), -p.id))
        for pod in candidates[:count]:
            pod.state = "draining"
            pod.drain_started_s = self.now
            self.push(self.now + self.config.drain_timeout_s, "drain_timeout", pod)
            self.maybe_delete(pod)
        self.account_replicas()

    def maybe_delete(self, pod: Pod) -> None:
        if pod.state == "draining" and pod.outstanding() == 0:
            self.settle_gpu(pod)
            pod.state = "gone"
            pod.deleted_s = self.now

    def settle_gpu(self, pod: Pod) -> None:
        for gpu in range(pod.gpus):
            if pod.gpu_active[gpu]:
                pod.gpu_busy_s += self.now - pod.gpu_since_s[gpu]
            pod.gpu_since_s[gpu] = self.now

    # -- requests ---------------------------------------------------------------------------------
    def arrive(self) -> None:
        mix = self.config.mix
        resolutions, weights = zip(*mix.octree_weights)
        request = Request(self.next_request_id, self.now, self.rng.random() < mix.textured_fraction,
                          self.rng.choices(resolutions, weights)[0], wait_since_s=self.now)
        self.next_request_id += 1
        self.dispatch(request)
        self.in_system += 1
        rate = self.rate_at(self.now)
        if rate > 0:
            next_s = self.now + self.rng.expovariate(rate / 3600.0)
            if next_s <= self.config.duration_s:  # after that: no new arrivals, the accepted ones finish
                self.push(next_s, "arrival")

    def dispatch(self, request: Request) -> None:
        if self.config.balancing == "central":
            self.central.append(request)
            self.pull_central()
            return
        ready = [pod for pod in self.pods if pod.state == "ready"]
        if ready:
            pod = min(ready, key=lambda p: (p.outstanding(), self.rng.random()))
            limit = self.config.max_queue_size
            if not limit or len(pod.queues["shape"]) < limit:
                self.accept(pod, request)
                return
        # Refused (no ready pod: connection refused; full queue: 503): the client backs off and retries.
        request.attempts += 1
        self.refused += 1
        if request.attempts > RETRY_ATTEMPTS:
            self.fail(request)
            return
        delay = min(RETRY_MAX_DELAY_S, RETRY_INITIAL_DELAY_S * 2 ** (request.attempts - 1))
        self.push(self.now + delay, "retry", request)

    def fail(self, request: Request) -> None:
        """The client gives up (retries spent) or the pod was killed at the end of its drain."""
        self.in_system -= 1
        self.failed_total += 1
        if request.arrival_s >= self.config.warmup_s:
            self.failed += 1

    def pull_central(self) -> None:
        for pod in self.pods:
            while self.central and pod.state == "ready" and pod.running["shape"] is None and not pod.queues["shape"]:
                self.accept(pod, self.central.popleft())

    def accept(self, pod: Pod, request: Request) -> None:
        request.queued_s += self.now - request.wait_since_s
        preprocess_s = self.sample(self.config.profile.preprocess_s)
        request.service_s += preprocess_s
        request.wait_since_s = self.now + preprocess_s
        if preprocess_s > 0:
            self.push(self.now + preprocess_s, "enqueue", (pod, request, "shape"))
        else:
            self.enqueue(pod, request, "shape")

    def enqueue(self, pod: Pod, request: Request, stage: str) -> None:
        limit = self.config.max_queue_size
        if stage == "paint" and limit and len(pod.queues["paint"]) >= limit:
            # Triton refuses the ensemble's paint step (its queue is full): the request fails after its
            # shape was made; the client sees UNAVAILABLE from a request that was accepted (no retry).
            if request.arrival_s >= self.config.warmup_s:
                self.refused_after_shape += 1
            self.fail(request)
            return
        request.wait_since_s = self.now
        pod.queues[stage].append(request)
        self.start_next(pod, stage)

    def start_next(self, pod: Pod, stage: str) -> None:
        if pod.running[stage] is not None or not pod.queues[stage]:
            return
        request = pod.queues[stage].popleft()
        request.queued_s += self.now - request.wait_since_s
        profile = self.config.profile
        mean_s = profile.shape_s(request.octree) if stage == "shape" else profile.paint_s(request.textured)
        work_s = self.sample(mean_s)
        uses_gpu = stage == "shape" or request.textured
        job = Job(request, stage, work_s, uses_gpu, started_s=self.now, updated_s=self.now)
        pod.running[stage] = job
        if uses_gpu:
            self.change_gpu_load(pod, pod.gpu_of(stage), +1)
        else:
            self.schedule(pod, job)
        if stage == "shape" and self.config.balancing == "central":
            self.pull_central()

    def change_gpu_load(self, pod: Pod, gpu: int, delta: int) -> None:
        """A GPU job started (+1) or ended (-1): settle busy time, re-rate the jobs that share the GPU."""
        if pod.gpu_active[gpu]:
            pod.gpu_busy_s += self.now - pod.gpu_since_s[gpu]
        pod.gpu_since_s[gpu] = self.now
        pod.gpu_active[gpu] += delta
        sharing = pod.gpu_active[gpu]
        rate = 1.0 / self.config.shared_gpu_slowdown if sharing > 1 else 1.0
        for job in pod.running.values():
            if job is not None and job.uses_gpu and pod.gpu_of(job.stage) == gpu:
                job.remaining_s -= job.rate * (self.now - job.updated_s)
                job.updated_s = self.now
                job.rate = rate
                self.schedule(pod, job)

    def schedule(self, pod: Pod, job: Job) -> None:
        job.token += 1
        self.push(self.now + max(0.0, job.remaining_s) / job.rate, "stage_done", (pod, job, job.token))

    def stage_done(self, pod: Pod, job: Job, token: int) -> None:
        if token != job.token or pod.running[job.stage] is not job:
            return  # re-rated since this completion was scheduled, or killed at the drain timeout
        request = job.request
        request.service_s += self.now - job.started_s
        pod.compute_s[job.stage] += self.now - job.started_s
        pod.running[job.stage] = None
        if job.uses_gpu:
            self.change_gpu_load(pod, pod.gpu_of(job.stage), -1)
        if job.stage == "shape":
            self.enqueue(pod, request, "paint")
        else:
            self.done.append((request, self.now))
            self.in_system -= 1
        self.start_next(pod, job.stage)
        if job.stage == "shape" and self.config.balancing == "central":
            self.pull_central()
        self.maybe_delete(pod)

    def drain_timeout(self, pod: Pod) -> None:
        if pod.state != "draining":
            return
        for stage in ("shape", "paint"):
            for request in list(pod.queues[stage]):
                self.fail(request)
            if pod.running[stage] is not None:
                self.fail(pod.running[stage].request)
            pod.queues[stage].clear()
            if pod.running[stage] is not None and pod.running[stage].uses_gpu:
                self.change_gpu_load(pod, pod.gpu_of(stage), -1)
            pod.running[stage] = None
        self.maybe_delete(pod)

    # -- autoscaling ------------------------------------------------------------------------------
    def do_scrape(self) -> None:
        """Prometheus scrape: pending requests now, and each stage's compute rate over the busy window."""
        window_s = self.config.hpa.busy_window_s
        self.scrape = {}
        for pod in self.pods:
            if pod.state != "ready":
                continue
            pod.compute_samples.append((self.now, pod.compute_s["shape"], pod.compute_s["paint"]))
            while pod.compute_samples[0][0] < self.now - window_s:
                pod.compute_samples.popleft()
            first = pod.compute_samples[0]
            span_s = self.now - first[0]
            busy = 0.0
            if span_s > 0:
                busy = max(pod.compute_s["shape"] - first[1], pod.compute_s["paint"] - first[2]) / span_s
            self.scrape[pod.id] = (pod.pending(), min(1.0, busy))
        self.push(self.now + self.config.hpa.scrape_interval_s, "scrape")

    def proposal(self, values: list[float], target: float, current: int) -> int:
        """One metric's replica proposal: the HPA algorithm with its tolerance and missing pods."""
        if not values or target <= 0:
            return current
        ratio = sum(values) / (len(values) * target)
        counted = len(values)
        missing = current - len(values)
        if missing > 0 and ratio > 1.0:  # pods without metrics yet count as 0 when scaling up
            ratio = sum(values) / ((len(values) + missing) * target)
            counted += missing
        if abs(ratio - 1.0) <= self.config.hpa.tolerance:
            return current
        return math.ceil(ratio * counted)

    def hpa_sync(self) -> None:
        hpa = self.config.hpa
        live = self.live_pods()
        current = len(live)
        scraped = [self.scrape[pod.id] for pod in live if pod.id in self.scrape]
        # Several metrics: the HPA takes the largest proposal.
        desired = max(self.proposal([value[0] for value in scraped], hpa.target_pending_per_pod, current),
                      self.proposal([value[1] for value in scraped], hpa.target_busy_fraction, current))
        desired = min(hpa.max_replicas, max(hpa.min_replicas, desired))
        self.recommendations.append((self.now, desired))
        horizon = max(hpa.scale_up_window_s, hpa.scale_down_window_s)
        while self.recommendations and self.recommendations[0][0] < self.now - horizon:
            self.recommendations.popleft()
        up = min(r for t, r in self.recommendations if t >= self.now - hpa.scale_up_window_s)
        down = max(r for t, r in self.recommendations if t >= self.now - hpa.scale_down_window_s)
        target = current
        if target < up:
            target = up
        if target > down:
            target = down
        if target > current:
            added = sum(d for t, d in self.scale_events if d > 0 and t >= self.now - hpa.scale_up_period_s)
            base = current - added
            limit = max(base + hpa.scale_up_pods, math.ceil(base * (1 + hpa.scale_up_percent / 100.0)))
            target = min(target, limit, hpa.max_replicas)
        elif target < current:
            removed = -sum(d for t, d in self.scale_events if d < 0 and t >= self.now - hpa.scale_down_period_s)
            target = max(target, current + removed - hpa.scale_down_pods)
        if target > current:
            for _ in range(target - current):
                self.add_pod(ready_now=False)
        elif target < current:
            self.remove_pods(current - target)
        if target != current:
            self.scale_events.append((self.now, target - current))
        while self.scale_events and self.scale_events[0][0] < self.now - horizon:
            self.scale_events.popleft()
        self.push(self.now + hpa.sync_period_s, "hpa")

    # -- run --------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        config = self.config
        initial = config.replicas if config.replicas is not None else config.hpa.min_replicas
        for _ in range(initial):
            self.add_pod(ready_now=True)
        self.push(0.0, "arrival")
        if config.replicas is None:
            self.push(0.0, "scrape")
            self.push(config.hpa.sync_period_s, "hpa")
        if config.record_timeline:
            self.push(0.0, "sample")
        handlers = {
            "arrival": lambda _: self.arrive(),
            "retry": self.dispatch,
            "enqueue": lambda p: self.enqueue(*p),
            "stage_done": lambda p: self.stage_done(*p),
            "pod_ready": self.pod_ready,
            "drain_timeout": self.drain_timeout,
            "scrape": lambda _: self.do_scrape(),
            "hpa": lambda _: self.hpa_sync(),
            "sample": lambda _: self.sample_timeline(),
        }
        # Requests that arrived before duration_s are followed to their end, so that long waits near the
        # end are not censored; the run stops once none is left (or DRAIN_LIMIT_S later, overloaded).
        while self.events:
            time_s, _, kind, payload = heapq.heappop(self.events)
            if time_s > config.duration_s and (self.in_system == 0 or time_s > config.duration_s + DRAIN_LIMIT_S):
                break
            self.now = time_s
            if kind == "sample" and time_s > config.duration_s:
                continue
            handlers[kind](payload)
        self.account_replicas()
        return self.summary()

    def pod_ready(self, pod: Pod) -> None:
        if pod.state == "starting":
            pod.state = "ready"
            if self.config.balancing == "central":
                self.pull_central()

    def sample_timeline(self) -> None:
        live = self.live_pods()
        self.timeline.append((self.now, len(live), sum(p.state == "ready" for p in live),
                              sum(p.pending() for p in self.pods)))
        self.push(self.now + 60.0, "sample")

    def summary(self) -> dict[str, Any]:
        config = self.config
        counted = [(request, end_s) for request, end_s in self.done if request.arrival_s >= config.warmup_s]
        latency = np.array([end_s - request.arrival_s for request, end_s in counted])
        queued = np.array([request.queued_s for request, _ in counted])
        gpu_seconds = busy_seconds = 0.0
        for pod in self.pods:
            self.settle_gpu(pod)
            end_s = pod.deleted_s if pod.deleted_s is not None else self.now
            gpu_seconds += pod.gpus * (end_s - pod.created_s)
            busy_seconds += pod.gpu_busy_s

        def percentile(values: np.ndarray, q: float) -> float:
            return float(np.percentile(values, q)) if len(values) else float("nan")

        return {
            "rate_per_hour": config.rate_per_hour,
            "layout": config.layout,
            "replicas": config.replicas if config.replicas is not None else "hpa",
            "completed": len(counted),
            "refused_attempts": self.refused,
            "failed": self.failed,
            "failed_total": self.failed_total,
            "refused_after_shape": self.refused_after_shape,
            "latency_p50_s": percentile(latency, 50),
            "latency_p95_s": percentile(latency, 95),
            "latency_mean_s": float(latency.mean()) if len(latency) else float("nan"),
            "queue_mean_s": float(queued.mean()) if len(queued) else float("nan"),
            "queue_p95_s": percentile(queued, 95),
            "waited_fraction": float((queued > 1e-9).mean()) if len(queued) else float("nan"),
            "gpu_utilisation": busy_seconds / gpu_seconds if gpu_seconds else 0.0,
            "replicas_mean": self.replica_area / config.duration_s,
            "replicas_max": self.replica_max,
        }


def simulate(config: SimConfig) -> dict[str, Any]:
    """Run one simulation; returns its summary (and ``timeline`` when ``record_timeline``)."""
    simulation = Simulation(config)
    result = simulation.run()
    if config.record_timeline:
        result["timeline"] = simulation.timeline
    return result


# ---------------------------------------------------------------------------------------------------
# Closed forms (the tests compare the simulation with them)


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability that an arrival waits in M/M/c with ``servers`` and load ``lambda / mu`` (< servers)."""
    if offered_load >= servers:
        return 1.0
    term = 1.0
    total = 1.0
    for k in range(1, servers):
        term *= offered_load / k
        total += term
    term *= offered_load / servers
    top = term * servers / (servers - offered_load)
    return top / (total + top)


def mmc_mean_wait_s(servers: int, arrival_per_s: float, service_mean_s: float) -> float:
    """Mean time in queue of M/M/c."""
    load = arrival_per_s * service_mean_s
    return erlang_c(servers, load) * service_mean_s / (servers - load)


# ---------------------------------------------------------------------------------------------------
# Experiments


def replicas_needed(base: SimConfig, rate_per_hour: float, slo_p95_s: float, max_replicas: int) -> tuple[int | None, dict]:
    """Fewest fixed replicas whose simulated p95 latency at ``rate_per_hour`` meets ``slo_p95_s``."""
    profile = base.profile
    mean_paint = base.mix.textured_fraction * profile.paint_textured_s + (1 - base.mix.textured_fraction) * profile.paint_untextured_s
    per_pod_per_hour = 3600.0 / max(mean_paint, 1e-9)
    start = max(1, math.floor(rate_per_hour / per_pod_per_hour))
    last: dict = {}
    for replicas in range(start, max_replicas + 1):
        last = simulate(replace(base, rate_per_hour=rate_per_hour, replicas=replicas))
        if last["failed"] == 0 and last["latency_p95_s"] <= slo_p95_s:
            return replicas, last
    return None, last


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    profile = load_profile(args.service_times, args.octree_scaling).scaled(args.time_scale)
    if args.pod_start_s is not None:
        profile = replace(profile, pod_start_s=args.pod_start_s)
    mix = RequestMix.parse(args.textured_fraction, args.octree_mix)
    hpa = HpaPolicy(target_pending_per_pod=args.hpa_target, max_replicas=args.max_replicas)
    hours = 3.0 if args.quick else args.hours
    base = SimConfig(profile=profile, mix=mix, duration_s=(hours + 1.0) * 3600.0, warmup_s=3600.0,
                     hpa=hpa, shared_gpu_slowdown=args.shared_gpu_slowdown, service_cv=args.service_cv,
                     seed=args.seed)
    rates = [float(r) for r in args.rates.split(",")]
    layouts = list(LAYOUTS) if args.layout == "both" else [args.layout]
    results: dict[str, Any] = {"profile": asdict(profile), "mix": asdict(mix), "hpa": asdict(hpa),
                               "simulated_hours": hours, "slo_p95_s": args.slo_p95_s, "layouts": {}}
    for layout in layouts:
        layout_base = replace(base, layout=layout)
        sizing = {}
        for rate in sorted(set(rates) | set(QUESTION_RATES_PER_HOUR)):
            replicas, summary = replicas_needed(layout_base, rate, args.slo_p95_s, args.max_replicas)
            sizing[str(int(rate))] = {"replicas": replicas, "gpus": replicas * LAYOUTS[layout] if replicas else None,
                                      **summary}
            print(f"{layout:10s} {rate:6.0f}/h fixed: {replicas} pods, p95 {summary['latency_p95_s']:7.1f} s, "
                  f"GPU util {summary['gpu_utilisation']:.2f}", flush=True)
        autoscaled = {}
        for rate in rates:
            summary = simulate(replace(layout_base, rate_per_hour=rate, replicas=None))
            autoscaled[str(int(rate))] = summary
            print(f"{layout:10s} {rate:6.0f}/h HPA:   {summary['replicas_mean']:5.2f} pods (max {summary['replicas_max']}),"
                  f" p50 {summary['latency_p50_s']:6.1f} s, p95 {summary['latency_p95_s']:7.1f} s, "
                  f"queue {summary['queue_mean_s']:6.1f} s, GPU util {summary['gpu_utilisation']:.2f}", flush=True)
        step = simulate(replace(layout_base, replicas=None, record_timeline=True, warmup_s=0.0,
                                duration_s=6 * 3600.0, rate_schedule=((0.0, 60.0), (3600.0, 600.0), (3 * 3600.0, 60.0))))
        results["layouts"][layout] = {"fixed": sizing, "hpa": autoscaled, "step": step}
    return results


def answer_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    for layout, data in results["layouts"].items():
        for rate in QUESTION_RATES_PER_HOUR:
            entry = data["fixed"][str(int(rate))]
            lines.append(f"{layout}: {int(rate)} requests/hour need {entry['replicas']} pods ({entry['gpus']} GPUs) for "
                         f"p95 <= {results['slo_p95_s']:.0f} s (simulated p95 {entry['latency_p95_s']:.0f} s, "
                         f"GPU utilisation {entry['gpu_utilisation']:.2f})")
    return lines


def write_markdown(results: dict[str, Any], path: Path) -> None:
    profile = results["profile"]
    lines = [
        "# Capacity model (benchmarks/capacity.py)", "",
        f"Service times: `{profile['name']}` ({profile['kind']}: {profile['source']}). "
        f"Shape {profile['shape_fixed_s'] + profile['shape_scaled_s']:.1f} s at R 256 (exponent "
        f"{profile['octree_exponent']:.2f}), paint {profile['paint_textured_s']:.1f} s textured / "
        f"{profile['paint_untextured_s']:.1f} s untextured, pod start {profile['pod_start_s']:.0f} s. "
        f"Mix: {results['mix']['textured_fraction']:.0%} textured, octree {results['mix']['octree_weights']}. "
        f"{results['simulated_hours']:.0f} simulated hours per point after a 1 h warm-up.", "",
        "## Answers", "", *[f"* {line}" for line in answer_lines(results)], "",
    ]
    for layout, data in results["layouts"].items():
        lines += [f"## {layout}", "", "| rate/h | fixed pods for SLO | p95 s | HPA pods mean (max) | HPA p50 s | HPA p95 s "
                  "| HPA queue mean s | HPA GPU util |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for rate, hpa in data["hpa"].items():
            fixed = data["fixed"][rate]
            lines.append(f"| {rate} | {fixed['replicas']} | {fixed['latency_p95_s']:.0f} | {hpa['replicas_mean']:.2f} "
                         f"({hpa['replicas_max']}) | {hpa['latency_p50_s']:.0f} | {hpa['latency_p95_s']:.0f} | "
                         f"{hpa['queue_mean_s']:.0f} | {hpa['gpu_utilisation']:.2f} |")
        lines.append("")
    path.write_text("\n".join(lines))


def plot(results: dict[str, Any], sweep_png: Path, step_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label = f"{results['profile']['name']} ({results['profile']['kind']})"
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for layout, data in results["layouts"].items():
        rates = [float(r) for r in data["hpa"]]
        hpa = list(data["hpa"].values())
        axes[0, 0].plot(rates, [h["latency_p50_s"] for h in hpa], "o--", label=f"{layout} HPA p50")
        axes[0, 0].plot(rates, [h["latency_p95_s"] for h in hpa], "o-", label=f"{layout} HPA p95")
        axes[0, 1].plot(rates, [h["queue_mean_s"] for h in hpa], "o-", label=f"{layout} HPA mean queue")
        axes[1, 0].plot(rates, [h["gpu_utilisation"] for h in hpa], "o-", label=f"{layout} HPA")
        axes[1, 1].plot(rates, [h["replicas_mean"] for h in hpa], "o-", label=f"{layout} HPA mean")
        fixed_rates = sorted(float(r) for r in data["fixed"])
        axes[1, 1].step(fixed_rates, [data["fixed"][str(int(r))]["replicas"] or np.nan for r in fixed_rates], where="post",
                        label=f"{layout} fixed, p95 <= {results['slo_p95_s']:.0f} s")
    axes[0, 0].axhline(results["slo_p95_s"], color="grey", lw=0.8, ls=":")
    titles = [("latency (s)", axes[0, 0]), ("queue time (s)", axes[0, 1]), ("GPU utilisation", axes[1, 0]),
              ("replicas (pods)", axes[1, 1])]
    for title, axis in titles:
        axis.set_xlabel("arrival rate (requests / hour)")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    fig.suptitle(f"hy3d-triton capacity model, service times {label}")
    fig.tight_layout()
    fig.savefig(sweep_png, dpi=110)
    plt.close(fig)

    fig, axis = plt.subplots(figsize=(11, 4))
    for layout, data in results["layouts"].items():
        timeline = np.array(data["step"]["timeline"])
        axis.plot(timeline[:, 0] / 3600, timeline[:, 1], label=f"{layout} replicas")
        axis.plot(timeline[:, 0] / 3600, timeline[:, 2], ls="--", label=f"{layout} ready")
        axis.plot(timeline[:, 0] / 3600, timeline[:, 3], lw=0.7, alpha=0.7, label=f"{layout} pending requests")
    axis.set_xlabel("hours (60/h, then 600/h from 1 h to 3 h, then 60/h)")
    failed = ", ".join(f"{layout}: {data['step']['failed']} failed" for layout, data in results["layouts"].items())
    axis.set_title(f"HPA on pending requests and stage busy fraction, load step; service times {label}\n({failed})",
                   fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(step_png, dpi=110)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--service-times", default=GPU_TARGETS["name"],
                        help="gpu-targets (issue 11's goals, not measured) or a JSON file: serving.json, "
                             "bench_gpu.json or a {'profile': {...}} file")
    parser.add_argument("--octree-scaling", type=Path, default=RESULTS / "bench_shape.json",
                        help="bench_shape.json whose dense volume-decoding timings give the R exponent "
                             "(omit with --octree-scaling '' to keep the profile's)")
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiply every service time")
    parser.add_argument("--pod-start-s", type=float, default=None, help="override the profile's pod start time")
    parser.add_argument("--textured-fraction", type=float, default=RequestMix.textured_fraction)
    parser.add_argument("--octree-mix", default=",".join(f"{r}:{w}" for r, w in RequestMix.octree_weights))
    parser.add_argument("--layout", choices=[*LAYOUTS, "both"], default="both")
    parser.add_argument("--shared-gpu-slowdown", type=float, default=SimConfig.shared_gpu_slowdown)
    parser.add_argument("--service-cv", type=float, default=SimConfig.service_cv)
    parser.add_argument("--rates", default="30,60,120,240,360,480,600,900", help="requests per hour")
    parser.add_argument("--hours", type=float, default=12.0, help="simulated hours per point (after 1 h warm-up)")
    parser.add_argument("--slo-p95-s", type=float, default=SLO_P95_S)
    parser.add_argument("--hpa-target", type=float, default=HpaPolicy.target_pending_per_pod)
    parser.add_argument("--max-replicas", type=int, default=HpaPolicy.max_replicas)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="3 simulated hours per point")
    parser.add_argument("--out", type=Path, default=RESULTS / "capacity.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "capacity.png")
    parser.add_argument("--plot-step", type=Path, default=ROOT / "docs" / "capacity_hpa.png")
    args = parser.parse_args(argv)
    if args.octree_scaling is not None and str(args.octree_scaling) in ("", "."):
        args.octree_scaling = None
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = run_all(args)
    results["answers"] = answer_lines(results)
    for line in results["answers"]:
        print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    write_markdown(results, args.out.with_suffix(".md"))
    plot(results, args.plot, args.plot_step)
    print(f"wrote {args.out}, {args.out.with_suffix('.md')}, {args.plot}, {args.plot_step}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
