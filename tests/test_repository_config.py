"""Every config.pbtxt of model_repository/ agrees with the contract and with the other stages."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from hy3d_client import contract
from tritonclient.grpc import model_config_pb2

from hy3d_serving import settings
from hy3d_serving.stages import PAINT_PARAMETERS, SHAPE_PARAMETERS

REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"
STAGES = ("preprocess", "shape_dit", "paint_pbr")
ENSEMBLE_OUTPUTS = (contract.GLB_OUTPUT, contract.TEXTURED_OUTPUT, contract.SEED_OUTPUT, contract.ENGINE_OUTPUT)
# Triton config dtype for each contract dtype ("BYTES" is TYPE_STRING in config.pbtxt).
CONFIG_DTYPES = {"BOOL": "TYPE_BOOL", "UINT8": "TYPE_UINT8", "INT32": "TYPE_INT32", "INT64": "TYPE_INT64",
                 "FP32": "TYPE_FP32", "BYTES": "TYPE_STRING"}


def load_config(model: str) -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig()
    text_format.Parse((REPOSITORY / model / "config.pbtxt").read_text(), config)
    return config


def dtype_name(value: int) -> str:
    return model_config_pb2.DataType.Name(value)


def tensors_by_name(entries) -> dict:
    return {entry.name: entry for entry in entries}


def test_repository_holds_exactly_the_stages_the_ensemble_the_stream_and_the_texture_model():
    models = sorted(p.name for p in REPOSITORY.iterdir() if p.is_dir())
    assert models == sorted((*STAGES, contract.ENSEMBLE_MODEL, contract.STREAM_MODEL, contract.TEXTURE_MODEL))
    for model in models:
        assert load_config(model).name == model
        assert (REPOSITORY / model / "1").is_dir()
    for stage in STAGES:
        assert (REPOSITORY / stage / "1" / "model.py").is_file()
        assert load_config(stage).backend == "python"
    assert load_config(contract.ENSEMBLE_MODEL).platform == "ensemble"
    assert (REPOSITORY / contract.TEXTURE_MODEL / "1" / "model.py").is_file()
    assert load_config(contract.TEXTURE_MODEL).backend == "python"
    stream = load_config(contract.STREAM_MODEL)
    assert stream.backend == "python" and stream.model_transaction_policy.decoupled


def test_ensemble_inputs_match_the_contract_names_dtypes_dims_and_optional_flags():
    inputs = tensors_by_name(load_config(contract.ENSEMBLE_MODEL).input)
    assert set(inputs) == {contract.IMAGE_INPUT, *contract.PARAMETERS_BY_NAME}
    image = inputs[contract.IMAGE_INPUT]
    assert dtype_name(image.data_type) == CONFIG_DTYPES[contract.IMAGE_DTYPE]
    assert list(image.dims) == [-1, -1, -1]
    # Required by the contract, declared optional so that preprocess (not Triton's ensemble scheduler)
    # refuses a request without it, with an error naming IMAGE (see the comment in the config).
    assert image.optional
    for parameter in contract.PARAMETERS:
        entry = inputs[parameter.name]
        assert dtype_name(entry.data_type) == CONFIG_DTYPES[parameter.triton_dtype], parameter.name
        assert list(entry.dims) == [1], parameter.name
        assert entry.optional, parameter.name


def test_texture_model_takes_mesh_image_and_its_parameters_and_answers_like_the_ensemble():
    config = load_config(contract.TEXTURE_MODEL)
    inputs = tensors_by_name(config.input)
    assert set(inputs) == {contract.MESH_INPUT, contract.IMAGE_INPUT, *contract.TEXTURE_MODEL_PARAMETERS}
    assert dtype_name(inputs[contract.MESH_INPUT].data_type) == CONFIG_DTYPES[contract.MESH_DTYPE]
    assert list(inputs[contract.MESH_INPUT].dims) == [1]
    assert list(inputs[contract.IMAGE_INPUT].dims) == [-1, -1, -1]
    # MESH and IMAGE are required by the contract, declared optional so the model refuses a request
    # without one naming it.
    assert all(entry.optional for entry in inputs.values())
    for name in contract.TEXTURE_MODEL_PARAMETERS:
        parameter = contract.PARAMETERS_BY_NAME[name]
        assert dtype_name(inputs[name].data_type) == CONFIG_DTYPES[parameter.triton_dtype], name
        assert list(inputs[name].dims) == [1], name
    ensemble_outputs = {entry.name: (entry.data_type, list(entry.dims))
                        for entry in load_config(contract.ENSEMBLE_MODEL).output}
    assert {entry.name: (entry.data_type, list(entry.dims)) for entry in config.output} == ensemble_outputs
    assert config.max_batch_size == 0 and config.instance_group[0].count >= 1
    assert not config.parameters


def test_ensemble_outputs_match_the_contract():
    outputs = tensors_by_name(load_config(contract.ENSEMBLE_MODEL).output)
    assert set(outputs) == set(ENSEMBLE_OUTPUTS)
    expected = {contract.GLB_OUTPUT: "BYTES", contract.TEXTURED_OUTPUT: "BOOL", contract.SEED_OUTPUT: "INT64",
                contract.ENGINE_OUTPUT: "BYTES"}
    for name, dtype in expected.items():
        assert dtype_name(outputs[name].data_type) == CONFIG_DTYPES[dtype], name
        assert list(outputs[name].dims) == [1], name


@pytest.mark.parametrize(("stage", "parameters"), [
    ("preprocess", tuple(contract.PARAMETERS_BY_NAME)),
    ("shape_dit", SHAPE_PARAMETERS),
    ("paint_pbr", PAINT_PARAMETERS),
])
def test_every_stage_declares_the_parameters_it_reads_as_optional_with_contract_dtypes(stage, parameters):
    inputs = tensors_by_name(load_config(stage).input)
    for name in parameters:
        parameter = contract.PARAMETERS_BY_NAME[name]
        assert inputs[name].optional, f"{stage}.{name}"
        assert dtype_name(inputs[name].data_type) == CONFIG_DTYPES[parameter.triton_dtype], f"{stage}.{name}"
        assert list(inputs[name].dims) == [1], f"{stage}.{name}"


def test_ensemble_steps_feed_each_stage_every_required_input_with_matching_dtypes():
    ensemble = load_config(contract.ENSEMBLE_MODEL)
    available = {entry.name: (entry.data_type, list(entry.dims)) for entry in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        stage = load_config(step.model_name)
        stage_inputs = tensors_by_name(stage.input)
        stage_outputs = tensors_by_name(stage.output)
        assert set(step.input_map) <= set(stage_inputs), step.model_name
        for key, source in step.input_map.items():
            assert source in available, f"{step.model_name}.{key} <- {source} is produced by no earlier step"
            assert available[source][0] == stage_inputs[key].data_type, f"{step.model_name}.{key}"
        missing = {name for name, entry in stage_inputs.items() if not entry.optional} - set(step.input_map)
        assert not missing, f"{step.model_name} lacks required inputs {missing}"
        for key, target in step.output_map.items():
            available[target] = (stage_outputs[key].data_type, list(stage_outputs[key].dims))
    outputs = tensors_by_name(ensemble.output)
    for name, entry in outputs.items():
        assert available[name][0] == entry.data_type, name


def test_every_contract_parameter_reaches_a_stage_that_consumes_it():
    ensemble = load_config(contract.ENSEMBLE_MODEL)
    consumed_after_preprocess = {source for step in ensemble.ensemble_scheduling.step
                                 if step.model_name != "preprocess" for source in step.input_map.values()}
    assert set(contract.PARAMETERS_BY_NAME) - {"REMOVE_BACKGROUND"} <= consumed_after_preprocess


def test_stage_parameters_are_known_settings_and_instances_are_declared():
    known = {setting.parameter for setting in settings.STAGE_SETTINGS}
    for stage in STAGES:
        config = load_config(stage)
        assert set(config.parameters) <= known, stage
        assert config.instance_group and config.instance_group[0].count >= 1, stage
        assert config.max_batch_size == 0, stage
