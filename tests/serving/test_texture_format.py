"""The TEXTURE_FORMAT request parameter: a string choice in the contract, read by the stages, honoured by
the GLB export, refused by name when wrong, and served by hy3d_ensemble over HTTP and gRPC.

Promises: jpeg is the default; jpeg, png and webp are the only values (exact spelling), as text or UTF-8
bytes; anything else is refused naming TEXTURE_FORMAT and the allowed values; the GLB's textures are in
the format asked for (webp with EXT_texture_webp, the others core glTF 2.0), validator-clean.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pygltflib
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from hy3d_client import contract
from hy3d_client.contract import ContractError
from hy3d_client.sdk import Hy3DClient
from PIL import Image
from tritonclient.utils import InferenceServerException

from hy3d_serving import tensors
from hy3d_tooling.docs import contract_table
from hy3d_tooling.health import is_ready

from .glb_checks import base_color_textures, validation_report

PARAMETER = contract.PARAMETERS_BY_NAME["TEXTURE_FORMAT"]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mug.png"
#: MIME type of the GLB's images for each format.
MIME_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
WEBP_EXTENSION = "EXT_texture_webp"
#: Small settings that keep a textured ensemble request to seconds on a 2-core machine.
SMALL = {"octree_resolution": 64, "face_count": 1000, "seed": 21}
REQUEST_TIMEOUT_S = 600
CLIENTS = {"http": httpclient, "grpc": grpcclient}
INVALID_STATUS = {"http": "400", "grpc": "StatusCode.INVALID_ARGUMENT"}


def image_mime_types(glb: bytes) -> set[str]:
    gltf = pygltflib.GLTF2.load_from_bytes(glb)
    return {image.mimeType for image in gltf.images}


def extensions(glb: bytes) -> tuple[set[str], set[str]]:
    gltf = pygltflib.GLTF2.load_from_bytes(glb)
    return set(gltf.extensionsUsed or []), set(gltf.extensionsRequired or [])


# ---------------------------------------------------------------------------------------------------
# The contract parameter
# ---------------------------------------------------------------------------------------------------


def test_texture_format_is_an_optional_bytes_choice_defaulting_to_jpeg():
    assert (PARAMETER.key, PARAMETER.triton_dtype, PARAMETER.default) == ("texture_format", "BYTES", "jpeg")
    assert PARAMETER.choices == ("jpeg", "png", "webp")
    assert contract.validate_parameters({})["texture_format"] == "jpeg"
    assert PARAMETER.numpy_dtype is np.object_


@pytest.mark.parametrize("value", ["jpeg", "png", "webp", b"png", np.array([b"webp"], dtype=np.object_),
                                   np.bytes_(b"jpeg"), np.str_("png")])
def test_each_allowed_format_is_accepted_as_text_or_utf8_bytes(value):
    assert PARAMETER.coerce(value) in PARAMETER.choices


@pytest.mark.parametrize(("value", "expected"), [
    ("gif", "the string 'gif' is not allowed"),
    ("JPEG", "the string 'JPEG' is not allowed"),
    ("jpg", "the string 'jpg' is not allowed"),
    ("", "the string '' is not allowed"),
    (5, "got int 5"),
    (True, "got bool True"),
    (b"\xff\xfe", "bytes that are not UTF-8"),
])
def test_anything_else_is_refused_naming_the_input_and_the_allowed_formats(value, expected):
    with pytest.raises(ContractError) as caught:
        contract.validate_parameters({"TEXTURE_FORMAT": value}, by="name")
    assert caught.value.field == "TEXTURE_FORMAT"
    assert expected in str(caught.value)
    assert "expected one of jpeg, png, webp" in str(caught.value)


def test_the_request_tensor_is_utf8_bytes_in_a_one_element_bytes_array():
    tensor = contract.parameter_tensor(PARAMETER, "webp")
    assert tensor.shape == (1,) and tensor.dtype == np.object_ and tensor[0] == b"webp"


def test_a_stage_reads_the_tensor_and_refuses_another_dtype():
    read = tensors.read_parameters({"TEXTURE_FORMAT": np.array([b"png"], dtype=np.object_)}.get, ["TEXTURE_FORMAT"])
    assert read == {"texture_format": "png"}
    assert tensors.read_parameters({}.get, ["TEXTURE_FORMAT"]) == {"texture_format": "jpeg"}
    with pytest.raises(ContractError, match="TEXTURE_FORMAT: expected dtype BYTES, got int32"):
        tensors.read_parameters({"TEXTURE_FORMAT": np.array([1], np.int32)}.get, ["TEXTURE_FORMAT"])


def test_a_restricted_request_refuses_the_parameters_of_other_models():
    with pytest.raises(ContractError) as caught:
        contract.validate_parameters({"octree_resolution": 64}, names=contract.TEXTURE_MODEL_PARAMETERS)
    assert caught.value.field == "octree_resolution"
    assert "allowed: face_count, remove_background, seed, texture_format" in str(caught.value)
    assert set(contract.validate_parameters({}, names=contract.TEXTURE_MODEL_PARAMETERS)) == {
        "remove_background", "seed", "face_count", "texture_format"}


def test_the_readme_contract_table_lists_the_allowed_formats():
    row = next(line for line in contract_table().splitlines() if line.startswith("| `TEXTURE_FORMAT` "))
    assert "| `texture_format` | BYTES | [1] | jpeg | jpeg / png / webp |" in row


class UVPainter:
    """A paint engine that gives the mesh planar UVs and two small textures (the format under test is the
    export's, not the painting's)."""

    name = "uv-painter"

    def paint(self, mesh, image, *, seed, callback=None):
        import trimesh
        from trimesh.visual.material import PBRMaterial

        uv = (mesh.vertices[:, :2] - mesh.vertices[:, :2].min(axis=0)) / np.ptp(mesh.vertices[:, :2], axis=0)
        material = PBRMaterial(baseColorTexture=image.convert("RGB").resize((64, 64)),
                               metallicRoughnessTexture=Image.new("RGB", (64, 64), (0, 128, 0)))
        return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False,
                               visual=trimesh.visual.TextureVisuals(uv=uv, material=material))


@pytest.mark.parametrize("texture_format", PARAMETER.choices)
def test_the_paint_stage_exports_the_textures_in_the_format_asked_for(texture_format, tmp_path):
    import trimesh

    from hy3d_serving.stages import MeshArrays, make_asset

    sphere = trimesh.creation.icosphere(subdivisions=2)
    mesh = MeshArrays(sphere.vertices.astype(np.float32), sphere.faces.astype(np.int32))
    rgba = np.asarray(Image.open(EXAMPLE).convert("RGBA"))
    asset = make_asset(UVPainter(), "test", mesh, rgba, {"texture": True, "seed": 1, "texture_format": texture_format})
    assert image_mime_types(asset.glb) == {MIME_TYPES[texture_format]}
    used, required = extensions(asset.glb)
    assert (WEBP_EXTENSION in used) == (texture_format == "webp")
    assert required <= used
    assert validation_report(asset.glb, tmp_path)["numErrors"] == 0


def test_the_paint_stage_exports_the_contract_default_when_no_format_is_given():
    import trimesh

    from hy3d_serving.stages import MeshArrays, make_asset

    sphere = trimesh.creation.icosphere(subdivisions=1)
    mesh = MeshArrays(sphere.vertices.astype(np.float32), sphere.faces.astype(np.int32))
    rgba = np.asarray(Image.open(EXAMPLE).convert("RGBA"))
    asset = make_asset(UVPainter(), "test", mesh, rgba, {"texture": True, "seed": 1})
    assert image_mime_types(asset.glb) == {MIME_TYPES[contract.DEFAULTS["texture_format"]]}


# ---------------------------------------------------------------------------------------------------
# hy3d_ensemble through tritonserver
# ---------------------------------------------------------------------------------------------------


def example_rgba() -> np.ndarray:
    return np.asarray(Image.open(EXAMPLE).convert("RGBA"))


def generate(server, protocol: str, **parameters):
    url = server.http_url if protocol == "http" else server.grpc_url
    return Hy3DClient(url, protocol, timeout_s=REQUEST_TIMEOUT_S).generate_result(example_rgba(), **parameters)


@pytest.mark.integration
@pytest.mark.parametrize(("protocol", "texture_format"), [("http", None), ("grpc", "png"), ("http", "webp")])
def test_the_ensemble_glb_carries_textures_in_the_format_asked_for(triton_server, tmp_path, protocol, texture_format):
    extra = {} if texture_format is None else {"texture_format": texture_format}
    result = generate(triton_server, protocol, **SMALL, **extra)
    assert base_color_textures(result.glb)
    assert image_mime_types(result.glb) == {MIME_TYPES[texture_format or contract.DEFAULTS["texture_format"]]}
    used, _required = extensions(result.glb)
    assert (WEBP_EXTENSION in used) == (texture_format == "webp")
    report = validation_report(result.glb, tmp_path)
    assert report["numErrors"] == 0, report["messages"]


def send_raw(server, protocol: str, value: np.ndarray, dtype: str) -> InferenceServerException:
    module = CLIENTS[protocol]
    # One image per protocol and dtype: each request is new to the server (no response cache hit).
    side = 32 + 8 * list(CLIENTS).index(protocol) + (0 if dtype == "BYTES" else 4)
    image = module.InferInput("IMAGE", [side, side, 4], "UINT8")
    pixels = np.zeros((side, side, 4), np.uint8)
    pixels[8:24, 8:24] = 200
    texture_format = module.InferInput("TEXTURE_FORMAT", [1], dtype)
    binary = {"binary_data": True} if protocol == "http" else {}
    image.set_data_from_numpy(pixels, **binary)
    texture_format.set_data_from_numpy(value, **binary)
    client = module.InferenceServerClient(server.http_url if protocol == "http" else server.grpc_url)
    with pytest.raises(InferenceServerException) as caught:
        client.infer(contract.ENSEMBLE_MODEL, [image, texture_format])
    assert is_ready(server.http_url)
    return caught.value


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_unknown_format_is_refused_by_preprocess_naming_it_and_the_allowed_ones(triton_server, protocol):
    error = send_raw(triton_server, protocol, np.array([b"gif"], dtype=np.object_), "BYTES")
    assert error.status() == INVALID_STATUS[protocol]
    assert ("preprocess: invalid input TEXTURE_FORMAT: the string 'gif' is not allowed; expected one of jpeg, "
            "png, webp") in error.message()


@pytest.mark.integration
def test_a_format_of_the_wrong_dtype_is_refused_naming_it(triton_server):
    error = send_raw(triton_server, "http", np.array([1], np.int32), "INT32")
    assert "'TEXTURE_FORMAT'" in error.message() and "BYTES" in error.message()
