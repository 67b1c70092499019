"""benchmarks/capacity.py: the simulator agrees with queueing theory, pipelines stages, follows the HPA."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from dataclasses import replace

import pytest
import yaml

from .conftest import REPO_ROOT, one

_spec = importlib.util.spec_from_file_location("capacity", REPO_ROOT / "benchmarks" / "capacity.py")
capacity = importlib.util.module_from_spec(_spec)
sys.modules["capacity"] = capacity
_spec.loader.exec_module(capacity)

#: Arrivals per M/M/c case: enough for the tolerances below (about 1.5 s of CPU each).
MMC_ARRIVALS = 100_000
#: Relative tolerance on the mean queueing time; absolute on the probability of waiting and on the
#: utilisation. Measured spread over 8 seeds x 2 cases at 100k arrivals: within 4.7 % and 0.009.
MMC_WAIT_REL_TOLERANCE = 0.10
MMC_PROBABILITY_TOLERANCE = 0.02

ONE_STAGE = capacity.ServiceProfile(name="one-stage", kind="test", source="test", preprocess_s=0.0,
                                    shape_fixed_s=0.0, shape_scaled_s=1.0, octree_exponent=0.0,
                                    paint_textured_s=0.0, paint_untextured_s=0.0, pod_start_s=0.0)
UNTEXTURED = capacity.RequestMix(textured_fraction=0.0, octree_weights=((256, 1.0),))


def test_erlang_c_matches_known_values():
    assert capacity.erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    assert capacity.erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert capacity.mmc_mean_wait_s(1, 0.5, 1.0) == pytest.approx(1.0)  # rho / (mu - lambda)


@pytest.mark.parametrize(("servers", "utilisation"), [(1, 0.6), (4, 0.75)])
def test_simulation_reproduces_mmc_closed_form(servers, utilisation):
    """Exponential one-stage service, a central FIFO queue, fixed pods: M/M/c, against Erlang C."""
    arrival_per_s = utilisation * servers  # mean service 1 s
    config = capacity.SimConfig(
        profile=ONE_STAGE, mix=UNTEXTURED, rate_per_hour=arrival_per_s * 3600.0,
        duration_s=MMC_ARRIVALS / arrival_per_s, warmup_s=1000.0 / arrival_per_s, replicas=servers,
        exponential_service=True, balancing="central", max_queue_size=0, seed=7)
    result = capacity.simulate(config)
    expected_wait = capacity.mmc_mean_wait_s(servers, arrival_per_s, 1.0)
    assert result["queue_mean_s"] == pytest.approx(expected_wait, rel=MMC_WAIT_REL_TOLERANCE)
    assert result["waited_fraction"] == pytest.approx(capacity.erlang_c(servers, arrival_per_s),
                                                      abs=MMC_PROBABILITY_TOLERANCE)
    assert result["latency_mean_s"] == pytest.approx(expected_wait + 1.0, rel=MMC_WAIT_REL_TOLERANCE)
    assert result["gpu_utilisation"] == pytest.approx(utilisation, abs=MMC_PROBABILITY_TOLERANCE)
    assert result["failed"] == 0


def _saturated(layout: str, slowdown: float = 1.5) -> dict:
    """One pod fed far beyond its capacity for 4 h, constant 5 s shape and 20 s paint."""
    profile = replace(ONE_STAGE, shape_scaled_s=5.0, paint_textured_s=20.0)
    config = capacity.SimConfig(profile=profile, mix=capacity.RequestMix(1.0, ((256, 1.0),)), layout=layout,
                                rate_per_hour=3600.0, duration_s=4 * 3600.0, warmup_s=0.0, replicas=1,
                                service_cv=0.0, max_queue_size=0, shared_gpu_slowdown=slowdown)
    simulation = capacity.Simulation(config)
    simulation.run()
    return {"completed_in_window": sum(end_s <= config.duration_s for _, end_s in simulation.done)}


def test_pod_pipelines_shape_of_the_next_request_while_painting():
    """Split GPUs: the slower stage (paint, 20 s) sets the pace, not shape + paint (25 s)."""
    completed = _saturated("split-gpu")["completed_in_window"]
    pipelined, serial = 4 * 3600 / 20, 4 * 3600 / 25
    assert completed == pytest.approx(pipelined, rel=0.02)
    assert completed > serial * 1.2


def test_stages_sharing_one_gpu_slow_each_other_down():
    shared = _saturated("single-gpu", slowdown=1.5)["completed_in_window"]
    independent = _saturated("single-gpu", slowdown=1.0)["completed_in_window"]
    assert shared < independent
    # Saturated, shape always has a next request, so with full contention (slowdown 2) paint runs at half
    # speed all the time: 40 s per request, the reason the split layout keeps its pace under overload.
    assert _saturated("single-gpu", slowdown=2.0)["completed_in_window"] == pytest.approx(4 * 3600 / 40, rel=0.02)


def test_hpa_scales_up_under_load_within_its_policy_and_back_down():
    hpa = capacity.HpaPolicy()
    config = capacity.SimConfig(profile=capacity.load_profile("gpu-targets"), replicas=None, hpa=hpa,
                                duration_s=5 * 3600.0, warmup_s=0.0, record_timeline=True,
                                rate_schedule=((0.0, 600.0), (2 * 3600.0, 0.0)))
    result = capacity.simulate(config)
    replicas = [entry[1] for entry in result["timeline"]]
    assert max(replicas) >= 3, "600 requests/hour need more than one pod"
    assert replicas[-1] == hpa.min_replicas, "no load for 3 h: back to the minimum"
    # Never more than the policy allows within one scale-up period (samples are one minute apart).
    window = int(hpa.scale_up_period_s // 60)
    for start in range(len(replicas) - window):
        base = replicas[start]
        allowed = max(base + hpa.scale_up_pods, math.ceil(base * (1 + hpa.scale_up_percent / 100)))
        assert max(replicas[start:start + window]) <= allowed


def test_hpa_model_mirrors_the_shipped_hpa(rendered):
    """The simulator's HpaPolicy defaults are the HorizontalPodAutoscaler of components/autoscaling."""
    spec = one(rendered["single-gpu"], "HorizontalPodAutoscaler")["spec"]
    policy = capacity.HpaPolicy()
    pending, busy = spec["metrics"]
    assert float(pending["pods"]["target"]["averageValue"]) == policy.target_pending_per_pod
    assert busy["pods"]["target"]["averageValue"] == f"{policy.target_busy_fraction * 1000:.0f}m"
    assert (spec["minReplicas"], spec["maxReplicas"]) == (policy.min_replicas, policy.max_replicas)
    up, down = spec["behavior"]["scaleUp"], spec["behavior"]["scaleDown"]
    assert up["stabilizationWindowSeconds"] == policy.scale_up_window_s
    assert up["selectPolicy"] == "Max"
    assert {(p["type"], p["value"], p["periodSeconds"]) for p in up["policies"]} == {
        ("Pods", policy.scale_up_pods, policy.scale_up_period_s),
        ("Percent", policy.scale_up_percent, policy.scale_up_period_s)}
    assert down["stabilizationWindowSeconds"] == policy.scale_down_window_s
    assert [(p["type"], p["value"], p["periodSeconds"]) for p in down["policies"]] == [
        ("Pods", policy.scale_down_pods, policy.scale_down_period_s)]
    rules = yaml.safe_load(one(rendered["single-gpu"], "ConfigMap", "hy3d-prometheus-adapter-rules")["data"]["config.yaml"])
    assert f"[{policy.busy_window_s / 60:.0f}m]" in rules["rules"][1]["metricsQuery"]
    monitor = one(rendered["single-gpu"], "PodMonitor")
    assert monitor["spec"]["podMetricsEndpoints"][0]["interval"] == f"{policy.scrape_interval_s:.0f}s"


def test_gpu_profile_is_labelled_as_targets_not_measurements():
    profile = capacity.load_profile("gpu-targets")
    assert profile.kind == "target"
    assert profile.shape_s(256) == pytest.approx(5.0)  # issue 11: shape <= 5 s
    assert profile.paint_s(True) == pytest.approx(20.0)  # texture <= 20 s


def test_service_times_are_read_from_the_benchmark_results():
    results = REPO_ROOT / "benchmarks" / "results"
    serving = json.loads((results / "serving.json").read_text())
    exponent = capacity.fit_octree_exponent(json.loads((results / "bench_shape.json").read_text()))
    assert 1.0 < exponent < 3.5, "volume decoding grows between R^1 and R^3"
    profile = capacity.load_profile(str(results / "serving.json"), results / "bench_shape.json")
    assert profile.kind == "measured"
    octree = serving["setup"]["octree_resolution"]
    assert profile.shape_s(octree) == pytest.approx(serving["medians_s"]["shape_s"])
    assert profile.paint_s(True) == pytest.approx(serving["medians_s"]["paint_export_s"])
    assert profile.octree_exponent == pytest.approx(exponent)


def test_bench_gpu_results_become_a_profile(tmp_path):
    """The ``bench_gpu.json`` format of issue 11: stages grouped into shape and paint, export apart."""
    stages = {"dino": 0.2, "denoising steps": 1.8, "volume decoding": 0.9, "marching cubes": 0.3,
              "post-processing": 0.4, "uv": 0.5, "renders": 0.6, "multiview diffusion": 9.0,
              "super-resolution": 1.5, "bake": 1.2, "inpaint": 0.4, "export": 0.3}
    path = tmp_path / "bench_gpu.json"
    path.write_text(json.dumps({"device": "cuda", "dtype": "float16",
                                "stages": {name: {"seconds": s, "peak_gib": 1.0} for name, s in stages.items()}}))
    profile = capacity.load_profile(str(path))
    assert profile.kind == "measured"
    assert profile.shape_s(256) == pytest.approx(0.2 + 1.8 + 0.9 + 0.3 + 0.4)
    assert profile.paint_s(True) == pytest.approx(0.5 + 0.6 + 9.0 + 1.5 + 1.2 + 0.4 + 0.3)
    assert profile.paint_s(False) == pytest.approx(0.3)


def test_unknown_service_time_file_is_refused_by_name(tmp_path):
    path = tmp_path / "other.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match="other.json"):
        capacity.load_profile(str(path))
