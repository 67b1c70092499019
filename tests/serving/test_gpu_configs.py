"""The GPU model-config variants (``configs/gpu.pbtxt``, chosen by ``--model-config-name=gpu``).

Promises: shape_dit and paint_pbr have one, with KIND_GPU instances on every visible GPU and otherwise
the same config as ``config.pbtxt``; preprocess and the ensembles have none (they stay on the CPU); each
warms its stage up with real data files from the repository that pass our own input checks; and a model
served with the variant is ready only after its warm-up request ran.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from hy3d_serving import tensors

from .ensemble_client import generate

REPO_ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = REPO_ROOT / "model_repository"
SERVE_SCRIPT = REPO_ROOT / "scripts" / "serve"
#: Seconds the served copy may take to load (and warm up) every model.
READY_TIMEOUT_S = 600
GPU_MODELS = ("shape_dit", "paint_pbr")
#: Triton release of the development runtime (nvidia-pytriton 0.7.0).
DEV_TRITON_RELEASE = "2.51"
CONFIG_NAME = "gpu"
#: The split-GPU variant (deploy/kubernetes overlay split-gpu): the GPU each stage is pinned to.
SPLIT_CONFIG_NAME = "gpu-split"
SPLIT_GPUS = {"shape_dit": 0, "paint_pbr": 1}
#: numpy dtype of each Triton config dtype a warm-up input may use.
NUMPY_DTYPES = {"TYPE_UINT8": np.uint8, "TYPE_FP32": np.float32, "TYPE_INT32": np.int32,
                "TYPE_INT64": np.int64, "TYPE_BOOL": np.bool_}


def parse(path: Path) -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig()
    text_format.Parse(path.read_text(), config)
    return config


def gpu_config(model: str) -> model_config_pb2.ModelConfig:
    return parse(REPOSITORY / model / "configs" / f"{CONFIG_NAME}.pbtxt")


def warmup_arrays(model: str) -> dict[str, np.ndarray]:
    """The inputs of the model's warm-up sample, read from its data files."""
    (sample,) = gpu_config(model).model_warmup
    arrays = {}
    for name, data in sample.inputs.items():
        dtype = NUMPY_DTYPES[model_config_pb2.DataType.Name(data.data_type)]
        raw = (REPOSITORY / model / "warmup" / data.input_data_file).read_bytes()
        arrays[name] = np.frombuffer(raw, dtype=dtype).reshape(list(data.dims))
    return arrays


def test_shape_and_paint_have_a_gpu_variant_and_the_cpu_stages_do_not():
    for name in (CONFIG_NAME, SPLIT_CONFIG_NAME):
        variants = sorted(p.parent.parent.name for p in REPOSITORY.glob(f"*/configs/{name}.pbtxt"))
        assert variants == sorted(GPU_MODELS), name


@pytest.mark.parametrize("model", GPU_MODELS)
def test_split_variant_pins_its_stage_to_its_own_gpu_and_is_otherwise_the_gpu_variant(model):
    split = parse(REPOSITORY / model / "configs" / f"{SPLIT_CONFIG_NAME}.pbtxt")
    (group,) = split.instance_group
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind) == "KIND_GPU"
    assert group.count == 1 and list(group.gpus) == [SPLIT_GPUS[model]]
    variant = gpu_config(model)
    for config in (split, variant):
        config.ClearField("instance_group")
    assert split == variant


@pytest.mark.parametrize("model", GPU_MODELS)
def test_gpu_variant_runs_one_instance_on_every_visible_gpu(model):
    (group,) = gpu_config(model).instance_group
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind) == "KIND_GPU"
    assert group.count == 1 and list(group.gpus) == []


@pytest.mark.parametrize("model", GPU_MODELS)
def test_gpu_variant_is_the_default_config_but_for_instances_and_warmup(model):
    default, variant = parse(REPOSITORY / model / "config.pbtxt"), gpu_config(model)
    for config in (default, variant):
        config.ClearField("instance_group")
        config.ClearField("model_warmup")
    assert variant == default


@pytest.mark.parametrize("model", GPU_MODELS)
def test_warmup_gives_every_required_input_from_a_file_of_the_right_size(model):
    config = gpu_config(model)
    (sample,) = config.model_warmup
    assert sample.batch_size == 1 and sample.count >= 1  # Triton skips batch 0 samples
    required = {entry.name for entry in config.input if not entry.optional}
    assert required <= set(sample.inputs)
    declared = {entry.name: entry for entry in config.input}
    for name, data in sample.inputs.items():
        assert data.data_type == declared[name].data_type, name
        assert not data.zero_data and not data.random_data, f"{name}: warm-up data must be real"
        path = REPOSITORY / model / "warmup" / data.input_data_file
        itemsize = np.dtype(NUMPY_DTYPES[model_config_pb2.DataType.Name(data.data_type)]).itemsize
        assert path.stat().st_size == int(np.prod(data.dims)) * itemsize, name


def test_shape_warmup_image_passes_the_stage_input_checks_with_an_object_mask():
    rgba = tensors.read_rgba(warmup_arrays("shape_dit").get)
    alpha = rgba[..., 3]
    assert 0.05 < (alpha > 127).mean() < 0.95  # a real object on a transparent background


def test_paint_warmup_mesh_and_image_pass_the_stage_input_checks():
    import trimesh

    arrays = warmup_arrays("paint_pbr")
    vertices, faces = tensors.read_mesh(arrays.get)
    tensors.read_rgba(arrays.get)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert len(faces) >= 1000 and mesh.is_watertight and mesh.area > 0
    assert np.array_equal(arrays["RGBA"], warmup_arrays("shape_dit")["RGBA"])


@pytest.fixture(scope="module")
def cpu_copy_of_the_gpu_variant(tmp_path_factory) -> Path:
    """The repository with the GPU variants switched to KIND_CPU: the rest (warm-up) runs on this machine."""
    root = tmp_path_factory.mktemp("repository") / "model_repository"
    shutil.copytree(REPOSITORY, root, ignore=shutil.ignore_patterns("__pycache__"))
    for model in GPU_MODELS:
        path = root / model / "configs" / f"{CONFIG_NAME}.pbtxt"
        config = parse(path)
        config.instance_group[0].kind = model_config_pb2.ModelInstanceGroup.Kind.Value("KIND_CPU")
        path.write_text(text_format.MessageToString(config))
    return root


@pytest.mark.integration
def test_a_model_served_with_the_variant_is_ready_only_after_its_warmup_ran(cpu_copy_of_the_gpu_variant, tmp_path):
    from hy3d_tooling.server_process import ServeProcess

    log_path = tmp_path / "server.log"
    env = {"HY3D_MODEL_REPOSITORY": str(cpu_copy_of_the_gpu_variant), "HY3D_WEIGHTS_DIR": "",
           "HY3D_DEVICE": "cpu", "HY3D_MODEL_CONFIG": CONFIG_NAME}
    with ServeProcess([str(SERVE_SCRIPT)], log_path, env=env,
                      ready_timeout_s=READY_TIMEOUT_S) as server:
        asset = generate(server.http_url, "http", warmup_arrays("shape_dit")["RGBA"], {"octree_resolution": 64})
    log = log_path.read_text()
    for model, work in (("shape_dit", "shape generation (builtin-silhouette) done"),
                        ("paint_pbr", "texturing (builtin-projection) done")):
        loaded_at = log.index(f"successfully loaded '{model}'")
        assert f"[{model} request=" in log[:loaded_at] and work in log[:loaded_at], model
    assert asset.textured
    # The development runtime is Triton 2.51; the image's 25.01 is 2.54 (docs/gpu.md "Triton versions").
    assert re.search(rf"server_version\s*\|\s*{re.escape(DEV_TRITON_RELEASE)}\.", log)
