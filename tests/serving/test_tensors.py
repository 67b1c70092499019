"""Reading stage inputs: contract checks naming the tensor, defaults for absent parameters."""

from __future__ import annotations

import numpy as np
import pytest
from hy3d_client import contract
from hy3d_client.contract import ContractError

from hy3d_serving import tensors
from hy3d_serving.limits import MAX_MESH_FACES


def getter(**inputs):
    return inputs.get


def test_absent_parameters_take_the_contract_defaults():
    values = tensors.read_parameters(getter(), contract.PARAMETERS_BY_NAME)
    assert values == contract.DEFAULTS


def test_present_parameters_are_read_as_python_values():
    values = tensors.read_parameters(getter(SEED=np.array([7], np.int64), TEXTURE=np.array([False])),
                                     ("SEED", "TEXTURE"))
    assert values == {"seed": 7, "texture": False}
    assert type(values["seed"]) is int


def test_parameter_of_the_wrong_dtype_is_refused_naming_it():
    with pytest.raises(ContractError, match="^OCTREE_RESOLUTION: expected dtype INT32, got int64"):
        tensors.read_parameters(getter(OCTREE_RESOLUTION=np.array([64], np.int64)), ("OCTREE_RESOLUTION",))


def test_parameter_with_several_values_is_refused_naming_it():
    with pytest.raises(ContractError, match="^SEED: expected a single value"):
        tensors.read_parameters(getter(SEED=np.array([1, 2], np.int64)), ("SEED",))


def test_octree_resolution_100000_is_refused_before_any_work():
    with pytest.raises(ContractError, match=r"^OCTREE_RESOLUTION: 100000 is out of range; .*\[16, 512\]"):
        tensors.read_parameters(getter(OCTREE_RESOLUTION=np.array([100000], np.int32)), ("OCTREE_RESOLUTION",))


def test_missing_required_input_is_named():
    with pytest.raises(ContractError, match="^IMAGE: required input is missing"):
        tensors.read_image(getter())


def test_rgba_input_must_have_four_channels():
    with pytest.raises(ContractError, match="^RGBA: expected 4 channels"):
        tensors.read_rgba(getter(RGBA=np.zeros((16, 16, 3), np.uint8)))


def test_valid_mesh_is_returned_unchanged():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    faces = np.array([[0, 1, 2]], np.int32)
    got_vertices, got_faces = tensors.read_mesh(getter(VERTICES=vertices, FACES=faces))
    assert np.array_equal(got_vertices, vertices) and np.array_equal(got_faces, faces)


@pytest.mark.parametrize(("vertices", "faces", "message"), [
    (np.zeros((3, 3), np.float64), np.zeros((1, 3), np.int32), "^VERTICES: expected dtype FP32"),
    (np.zeros((3, 2), np.float32), np.zeros((1, 3), np.int32), r"^VERTICES: expected shape \[N, 3\]"),
    (np.zeros((3, 3), np.float32), np.zeros((0, 3), np.int32), "^FACES: expected between 1 and"),
    (np.full((3, 3), np.nan, np.float32), np.zeros((1, 3), np.int32), "^VERTICES: every coordinate must be finite"),
    (np.zeros((3, 3), np.float32), np.array([[0, 1, 3]], np.int32), r"^FACES: every index must lie in \[0, 2\]"),
    (np.zeros((3, 3), np.float32), np.zeros((MAX_MESH_FACES + 1, 3), np.int32), "^FACES: expected between 1"),
])
def test_bad_meshes_are_refused_naming_the_tensor(vertices, faces, message):
    with pytest.raises(ContractError, match=message):
        tensors.read_mesh(getter(VERTICES=vertices, FACES=faces))


def test_text_input_is_decoded_and_bounded():
    assert tensors.read_text(getter(SHAPE_ENGINE=np.array([b"builtin"], np.object_)), "SHAPE_ENGINE") == "builtin"
    with pytest.raises(ContractError, match="^SHAPE_ENGINE: expected a UTF-8 string"):
        tensors.read_text(getter(SHAPE_ENGINE=np.array([b"\xff\xfe"], np.object_)), "SHAPE_ENGINE")
    with pytest.raises(ContractError, match="at most 256 bytes"):
        tensors.read_text(getter(SHAPE_ENGINE=np.array([b"x" * 300], np.object_)), "SHAPE_ENGINE")


def test_output_tensors_have_shape_one_and_the_contract_dtype():
    assert tensors.bytes_tensor("shape=a").tolist() == [b"shape=a"]
    assert tensors.scalar_tensor(True, "BOOL").dtype == np.bool_
    assert tensors.scalar_tensor(5, "INT64").shape == (1,)
