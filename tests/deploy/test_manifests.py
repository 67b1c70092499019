"""deploy/kubernetes, rendered as a user applies it: valid for Kubernetes, and the operational facts hold."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from hy3d_serving import settings

from .conftest import REPO_ROOT, find, one

#: Kubernetes versions the manifests are validated against: the oldest we support (native preStop
#: sleep, PodDisruptionBudget unhealthyPodEvictionPolicy) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())
#: Kinds that are custom resources (no schema in kubernetes-validate): checked field by field below.
CUSTOM_KINDS = {"PodMonitor", "ServiceMonitor", "ScaledObject", "InferenceService", "ServingRuntime"}
OVERLAYS = ("single-gpu", "split-gpu")
GPUS_PER_POD = {"single-gpu": 1, "split-gpu": 2}
PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
PENDING_METRIC = "nv_inference_pending_request_count"
BUSY_METRIC = "hy3d_stage_busy_ratio"
COMPUTE_COUNTER = "nv_inference_compute_infer_duration_us"
#: Environment names that hold a credential; they may only come from a Secret reference.
SENSITIVE_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|API_KEY|CF_R2_", re.IGNORECASE)
#: Shared memory the Python backend gets per pod: enough for a few 4096 x 4096 RGBA images in flight.
MIN_SHM_BYTES = 1 << 30


def quantity_bytes(quantity: str | int) -> float:
    """A Kubernetes memory quantity (``2Gi``, ``512Mi``, ``1G``) in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(quantity))
    assert match, f"not a quantity: {quantity!r}"
    return float(match.group(1)) * units.get(match.group(2), 1)


def quantity_value(quantity: str | int) -> float:
    """A plain Kubernetes quantity (``2``, ``800m``) as a number."""
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def server_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment", "hy3d-triton")["spec"]["template"]["spec"]["containers"][0]


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment", "hy3d-triton")["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {entry["name"]: entry for entry in container.get("env", [])}


# --- valid Kubernetes -----------------------------------------------------------------------------


def test_every_rendered_manifest_validates_against_the_kubernetes_schemas(rendered):
    for variant, docs in rendered.items():
        assert docs, f"{variant} renders nothing"
        for doc in docs:
            if doc["kind"] in CUSTOM_KINDS:
                continue
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as error:
                    pytest.fail(f"{variant}: {doc['kind']}/{doc['metadata']['name']} invalid for Kubernetes "
                                f"{version} at {'.'.join(map(str, error.path))}: {error.message}")


def test_the_schema_validation_catches_a_misspelt_field(rendered):
    deployment = copy.deepcopy(one(rendered["single-gpu"], "Deployment"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["livenesProbe"] = container.pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_only_known_custom_resources_are_rendered(rendered):
    for variant, docs in rendered.items():
        for doc in docs:
            api_group = doc["apiVersion"].split("/")[0]
            if "." in api_group and not api_group.endswith("k8s.io"):
                assert doc["kind"] in CUSTOM_KINDS, f"{variant}: unchecked custom resource {doc['kind']}"


def test_custom_resources_have_their_required_fields(rendered):
    for variant, docs in rendered.items():
        for monitor in find(docs, "PodMonitor"):
            assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
            assert monitor["spec"]["selector"]["matchLabels"], variant
            endpoints = monitor["spec"]["podMetricsEndpoints"]
            assert endpoints and all(endpoint.get("port") for endpoint in endpoints), variant
        for scaled in find(docs, "ScaledObject"):
            assert scaled["apiVersion"] == "keda.sh/v1alpha1"
            assert scaled["spec"]["scaleTargetRef"]["name"], variant
            triggers = scaled["spec"]["triggers"]
            assert triggers and all(trigger["type"] and trigger["metadata"] for trigger in triggers), variant
        for service in find(docs, "InferenceService"):
            assert service["apiVersion"] == "serving.kserve.io/v1beta1"
            model = service["spec"]["predictor"]["model"]
            assert model["modelFormat"]["name"], variant
        for runtime in find(docs, "ServingRuntime"):
            assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
            assert runtime["spec"]["supportedModelFormats"], variant
            assert all(container["image"] for container in runtime["spec"]["containers"]), variant


# --- the Deployment -------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployment_runs_the_gpu_config_and_fails_closed_without_weights(rendered, overlay):
    env = env_of(server_container(rendered[overlay]))
    assert env["HY3D_MODEL_CONFIG"]["value"] == {"single-gpu": "gpu", "split-gpu": "gpu-split"}[overlay]
    assert env["HY3D_REQUIRE_WEIGHTS"]["value"] == "1"
    assert env["HY3D_WEIGHTS_DIR"]["value"] == "/opt/hy3d/weights"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployment_requests_its_gpus_on_gpu_nodes(rendered, overlay):
    docs = rendered[overlay]
    resources = server_container(docs)["resources"]
    gpus = GPUS_PER_POD[overlay]
    assert int(resources["requests"]["nvidia.com/gpu"]) == gpus
    assert int(resources["limits"]["nvidia.com/gpu"]) == gpus
    for kind in ("cpu", "memory", "ephemeral-storage"):
        assert kind in resources["requests"] and kind in resources["limits"], kind
    spec = pod_spec(docs)
    assert spec["nodeSelector"], "no node selector for GPU nodes"
    assert any(toleration["key"] == "nvidia.com/gpu" for toleration in spec["tolerations"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_dev_shm_is_a_memory_emptydir_of_documented_size(rendered, overlay):
    docs = rendered[overlay]
    volumes = {volume["name"]: volume for volume in pod_spec(docs)["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in server_container(docs)["volumeMounts"]}
    shm = volumes[mounts["/dev/shm"]]["emptyDir"]
    assert shm["medium"] == "Memory"
    size = quantity_bytes(shm["sizeLimit"])
    assert size >= MIN_SHM_BYTES
    assert size < quantity_bytes(server_container(docs)["resources"]["limits"]["memory"])
    assert shm["sizeLimit"] in (REPO_ROOT / "docs" / "deploy.md").read_text(), "size not documented"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_watch_readiness_at_start_and_liveness_after(rendered, overlay):
    container = server_container(rendered[overlay])
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/v2/health/ready", probe
        assert container[probe]["httpGet"]["port"] in ("http", PORTS["http"]), probe
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    startup = container["startupProbe"]
    startup_window_s = startup["periodSeconds"] * startup["failureThreshold"]
    assert startup_window_s >= int(settings.READY_TIMEOUT_S.default), "startup probe shorter than the load timeout"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_covers_the_drain_timeout(rendered, overlay):
    docs = rendered[overlay]
    env = env_of(server_container(docs))
    drain_s = int(env["HY3D_DRAIN_TIMEOUT_S"]["value"]) if "HY3D_DRAIN_TIMEOUT_S" in env else int(
        settings.DRAIN_TIMEOUT_S.default)
    assert drain_s >= int(settings.DRAIN_TIMEOUT_S.default)
    pre_stop_s = server_container(docs).get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert pod_spec(docs)["terminationGracePeriodSeconds"] >= pre_stop_s + drain_s


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_container_runs_unprivileged_on_a_read_only_root(rendered, overlay):
    docs = rendered[overlay]
    pod_security = pod_spec(docs)["securityContext"]
    assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] != 0
    container = server_container(docs)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # Every place the settings tell a library to write is inside a writable emptyDir.
    mounted = [mount["mountPath"] for mount in container["volumeMounts"] if not mount.get("readOnly")]
    for name in ("HOME", "XDG_CACHE_HOME", "NUMBA_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR",
                 "MPLCONFIGDIR"):
        path = env_of(container)[name]["value"]
        assert any(Path(path).is_relative_to(root) for root in mounted), f"{name}={path} is not writable"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_exposes_http_grpc_and_metrics(rendered, overlay):
    docs = rendered[overlay]
    container_ports = {port["name"]: port["containerPort"] for port in server_container(docs)["ports"]}
    assert container_ports == PORTS
    service = one(docs, "Service", "hy3d-triton")
    assert {port["name"]: port["port"] for port in service["spec"]["ports"]} == PORTS
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for svc in find(docs, "Service"):
        assert svc["spec"]["selector"].items() <= labels.items(), svc["metadata"]["name"]
    headless = one(docs, "Service", "hy3d-triton-headless")
    assert headless["spec"]["clusterIP"] == "None", "no per-pod addresses for a gRPC-aware balancer"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budget_covers_the_pods_without_blocking_drains(rendered, overlay):
    docs = rendered[overlay]
    budget = one(docs, "PodDisruptionBudget")
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rollout_adds_a_pod_before_removing_one(rendered, overlay):
    strategy = one(rendered[overlay], "Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 1, "maxUnavailable": 0}


def test_images_are_pinned_to_a_tag(rendered):
    for variant, docs in rendered.items():
        for doc in docs:
            template = doc.get("spec", {}).get("template", {}).get("spec", {})
            containers = template.get("containers", []) + doc.get("spec", {}).get("containers", [])
            for container in containers:
                name, _, tag = container["image"].rpartition(":")
                assert name and tag and tag != "latest", f"{variant}: {container['image']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_weights_pvc_component_mounts_the_claim_read_only_over_the_weights_dir(rendered, overlay):
    docs = rendered[f"{overlay}+weights-pvc"]
    claim = one(docs, "PersistentVolumeClaim", "hy3d-weights")
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]
    container = server_container(docs)
    mount = next(mount for mount in container["volumeMounts"] if mount["name"] == "weights")
    assert mount["mountPath"] == env_of(container)["HY3D_WEIGHTS_DIR"]["value"] and mount["readOnly"]
    volume = next(volume for volume in pod_spec(docs)["volumes"] if volume["name"] == "weights")
    assert volume["persistentVolumeClaim"]["claimName"] == "hy3d-weights"


def test_split_overlay_model_config_places_one_stage_per_gpu():
    gpu_configs = [REPO_ROOT / "model_repository" / model / "configs" / "gpu.pbtxt" for model in ("shape_dit", "paint_pbr")]
    split_configs = [path.with_name("gpu-split.pbtxt") for path in gpu_configs]
    if not all(path.exists() for path in gpu_configs + split_configs):
        # Triton would fall back to config.pbtxt (KIND_CPU) without them; docs/deploy.md says so.
        pytest.skip("model_repository/{shape_dit,paint_pbr}/configs/gpu-split.pbtxt not written yet "
                    "(gpu.pbtxt with gpus: [ 0 ] / [ 1 ]; owned by the model repository, see docs/deploy.md)")
    for model, gpu in (("shape_dit", 0), ("paint_pbr", 1)):
        text = (REPO_ROOT / "model_repository" / model / "configs" / "gpu-split.pbtxt").read_text()
        assert re.search(r"kind:\s*KIND_GPU", text), model
        assert re.search(rf"gpus:\s*\[\s*{gpu}\s*\]", text), f"{model} must run on GPU {gpu} only"


# --- secrets --------------------------------------------------------------------------------------


def test_no_secret_is_in_the_manifests(rendered):
    for variant, docs in rendered.items():
        assert not find(docs, "Secret"), f"{variant} ships a Secret"
        for doc in docs:
            for container in _containers(doc):
                for entry in container.get("env", []):
                    if SENSITIVE_NAME.search(entry["name"]):
                        assert "value" not in entry, f"{variant}: {entry['name']} set inline"
                        assert "secretKeyRef" in entry["valueFrom"], f"{variant}: {entry['name']} not from a Secret"
                for source in container.get("envFrom", []):
                    assert "configMapRef" not in source or not SENSITIVE_NAME.search(str(source)), variant


def test_only_the_client_side_reads_the_r2_secret(rendered):
    for variant in (*OVERLAYS, "kserve"):
        for doc in rendered[variant]:
            for container in _containers(doc):
                names = {entry["name"] for entry in container.get("env", [])}
                assert not {name for name in names if name.startswith("CF_R2_")}, f"server side reads R2 in {variant}"
    job = one(rendered["client"], "Job")
    env = env_of(job["spec"]["template"]["spec"]["containers"][0])
    for name in ("CF_R2_ACCOUNT_ID", "CF_R2_ACCESS_KEY", "CF_R2_SECRET_KEY", "CF_R2_BUCKET"):
        assert env[name]["valueFrom"]["secretKeyRef"]["key"] == name


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    return pod.get("containers", []) + spec.get("containers", []) + (
        [spec["predictor"]["model"]] if "predictor" in spec else [])


# --- autoscaling ----------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_hpa_scales_on_pending_requests_per_pod(rendered, overlay):
    docs = rendered[overlay]
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "hy3d-triton"}
    pending, busy = hpa["spec"]["metrics"]
    assert pending["type"] == busy["type"] == "Pods"
    assert pending["pods"]["metric"]["name"] == PENDING_METRIC
    assert busy["pods"]["metric"]["name"] == BUSY_METRIC
    assert pending["pods"]["target"]["type"] == busy["pods"]["target"]["type"] == "AverageValue"
    assert 0 < quantity_value(busy["pods"]["target"]["averageValue"]) <= 1, "a busy fraction"
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert "replicas" not in one(docs, "Deployment")["spec"], "the HPA owns the replica count"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_hpa_behaviour_suits_minutes_long_requests_and_slow_pod_start(rendered, overlay):
    behaviour = one(rendered[overlay], "HorizontalPodAutoscaler")["spec"]["behavior"]
    for policy in behaviour["scaleUp"]["policies"]:
        assert policy["periodSeconds"] >= 300, "adds pods again before the last ones could be ready"
    drain_s = int(settings.DRAIN_TIMEOUT_S.default)
    assert behaviour["scaleDown"]["stabilizationWindowSeconds"] >= drain_s, "removes pods faster than they drain"
    assert all(policy["type"] == "Pods" and policy["value"] == 1 for policy in behaviour["scaleDown"]["policies"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_adapter_rule_serves_the_hpa_metric(rendered, overlay):
    docs = rendered[overlay]
    config = yaml.safe_load(one(docs, "ConfigMap", "hy3d-prometheus-adapter-rules")["data"]["config.yaml"])
    pending, busy = config["rules"]
    for rule, series in ((pending, PENDING_METRIC), (busy, COMPUTE_COUNTER)):
        assert rule["seriesQuery"].startswith(series + "{")
        assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
        assert rule["resources"]["overrides"]["namespace"] == {"resource": "namespace"}
        assert re.fullmatch(rule["name"]["matches"], series)
        assert "<<.GroupBy>>" in rule["metricsQuery"], "not per pod"
    hpa = one(docs, "HorizontalPodAutoscaler")
    served = [rule["name"].get("as") for rule in config["rules"]]
    assert served == [metric["pods"]["metric"]["name"] for metric in hpa["spec"]["metrics"]]
    assert pending["metricsQuery"].startswith("sum("), "pending requests are summed over the stages"
    assert "rate(" in busy["metricsQuery"] and "/ 1000000" in busy["metricsQuery"], "microseconds per second"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_component_replaces_the_hpa_with_the_same_rule(rendered, overlay):
    docs = rendered[f"{overlay}+keda"]
    assert not find(docs, "HorizontalPodAutoscaler"), "two autoscalers would fight over the Deployment"
    assert not find(docs, "ConfigMap", "hy3d-prometheus-adapter-rules")
    hpa = one(rendered[overlay], "HorizontalPodAutoscaler")
    scaled = one(docs, "ScaledObject")
    triggers = scaled["spec"]["triggers"]
    targets = [quantity_value(metric["pods"]["target"]["averageValue"]) for metric in hpa["spec"]["metrics"]]
    for trigger, series, target in zip(triggers, (PENDING_METRIC, COMPUTE_COUNTER), targets, strict=True):
        assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
        assert series in trigger["metadata"]["query"]
        assert f'namespace="{one(docs, "Deployment")["metadata"]["namespace"]}"' in trigger["metadata"]["query"]
        assert float(trigger["metadata"]["threshold"]) == target
    assert scaled["spec"]["scaleTargetRef"]["name"] == "hy3d-triton"
    assert scaled["spec"]["minReplicaCount"] == hpa["spec"]["minReplicas"]
    if overlay == "single-gpu":  # the component is written for the single-gpu bounds
        assert scaled["spec"]["maxReplicaCount"] == hpa["spec"]["maxReplicas"]
    assert scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == hpa["spec"]["behavior"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_monitor_scrapes_the_metrics_port_of_every_pod(rendered, overlay):
    docs = rendered[overlay]
    monitor = one(docs, "PodMonitor")
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert [endpoint["port"] for endpoint in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]


# --- KServe ---------------------------------------------------------------------------------------


def test_kserve_example_uses_a_triton_runtime_with_our_image(rendered):
    docs = rendered["kserve"]
    service = one(docs, "InferenceService")
    runtime = one(docs, "ServingRuntime", service["spec"]["predictor"]["model"]["runtime"])
    assert {"name": "triton", "version": "2", "autoSelect": False} in runtime["spec"]["supportedModelFormats"]
    assert service["spec"]["predictor"]["model"]["modelFormat"]["name"] == "triton"
    (container,) = runtime["spec"]["containers"]
    server_image = server_container(rendered["single-gpu"])["image"]
    assert container["image"] == server_image
    env = env_of(container)
    assert env["HY3D_MODEL_CONFIG"]["value"] == "gpu" and env["HY3D_REQUIRE_WEIGHTS"]["value"] == "1"
    assert "--http-port=8080" in container["args"] and {"containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) == 1
    predictor = service["spec"]["predictor"]
    assert predictor["terminationGracePeriodSeconds"] >= int(settings.DRAIN_TIMEOUT_S.default)
    shm = next(volume for volume in predictor["volumes"] if volume["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in predictor["model"]["volumeMounts"]

