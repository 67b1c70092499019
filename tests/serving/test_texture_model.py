"""Texturing an existing mesh: the MESH checks and normalisation (hy3d_serving.mesh_input), and the model
hy3d_texture through a real tritonserver (built-in engines) over HTTP and gRPC.

Promises: a GLB, OBJ or PLY file is parsed in memory into one welded triangle mesh, node transforms
applied; it is centred on its bounding box and scaled so its largest side spans [-1, 1] (inside the shape
stage's [-1.01, 1.01]^3), never rotated, and reduced only when it has more faces than FACE_COUNT. A file
that cannot be parsed, holds no triangle, is over the limits or is not finite is refused with an error
naming MESH, and the server stays ready. The answer is the ensemble's: a validator-clean textured GLB,
TEXTURED, SEED_USED and ENGINE, the same bytes over either protocol.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from hy3d_client import contract
from hy3d_client.contract import ContractError
from hy3d_client.sdk import Hy3DClient
from PIL import Image
from tritonclient.utils import InferenceServerException

from hy3d_serving import mesh_input
from hy3d_tooling.health import is_ready

from .glb_checks import base_color_textures, face_count, load_mesh, validation_report

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mug.png"
CLIENTS = {"http": httpclient, "grpc": grpcclient}
INVALID_STATUS = {"http": "400", "grpc": "StatusCode.INVALID_ARGUMENT"}
#: Seconds one texturing request may take.
REQUEST_TIMEOUT_S = 600
#: A small budget that keeps each request to seconds on a 2-core machine.
SMALL = {"face_count": 1000, "seed": 99}
#: How far under FACE_COUNT the reduced mesh may land (FaceReducer's promise).
FACE_COUNT_TOLERANCE = 0.05
#: Float32 rounding of normalised coordinates.
COORDINATE_TOLERANCE = 1e-5


def sphere(subdivisions: int = 4) -> trimesh.Trimesh:
    """An icosphere (20 * 4**subdivisions faces) stretched to 3 x 2 x 1 and moved off the origin."""
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    mesh.apply_scale([3.0, 2.0, 1.0])
    mesh.apply_translation([10.0, -4.0, 2.5])
    return mesh


def file_bytes(mesh: trimesh.Trimesh | trimesh.Scene, file_type: str) -> bytes:
    data = mesh.export(file_type=file_type)
    return data.encode() if isinstance(data, str) else data


def example_rgba() -> np.ndarray:
    return np.asarray(Image.open(EXAMPLE).convert("RGBA"))


def half_extents(vertices: np.ndarray) -> np.ndarray:
    return (vertices.max(axis=0) - vertices.min(axis=0)) / 2.0


def centre(vertices: np.ndarray) -> np.ndarray:
    return (vertices.max(axis=0) + vertices.min(axis=0)) / 2.0


# ---------------------------------------------------------------------------------------------------
# Parsing and normalisation (no server)
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("file_type", contract.MESH_FILE_FORMATS)
def test_glb_obj_and_ply_files_are_read_and_normalised_without_rotation(file_type):
    source = sphere()
    mesh = mesh_input.prepare_mesh(file_bytes(source, file_type), face_count=contract.MAX_MESH_FILE_FACES // 10)
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int32
    assert len(mesh.faces) == len(source.faces)  # under FACE_COUNT: not reduced
    assert len(mesh.vertices) == len(source.vertices)  # welded, none lost
    np.testing.assert_allclose(centre(mesh.vertices), 0.0, atol=COORDINATE_TOLERANCE)
    assert half_extents(mesh.vertices).max() == pytest.approx(mesh_input.NORMALISED_HALF_EXTENT, abs=COORDINATE_TOLERANCE)
    # Uniform scale, axes kept: the 3 x 2 x 1 proportions stay along x, y, z.
    np.testing.assert_allclose(half_extents(mesh.vertices), [1.0, 2 / 3, 1 / 3], atol=1e-4)
    # The same surface, moved and scaled: every vertex maps back onto the source.
    scale = half_extents(source.vertices).max() / mesh_input.NORMALISED_HALF_EXTENT
    restored = mesh.vertices.astype(np.float64) * scale + centre(source.vertices)
    assert np.abs(np.sort(restored, axis=0) - np.sort(source.vertices, axis=0)).max() < 1e-4


def test_a_mesh_with_more_faces_than_face_count_is_reduced_and_stays_in_bounds():
    source = sphere(subdivisions=5)  # 20480 faces
    mesh = mesh_input.prepare_mesh(file_bytes(source, "glb"), face_count=2000)
    assert (1 - FACE_COUNT_TOLERANCE) * 2000 <= len(mesh.faces) <= 2000
    assert np.abs(mesh.vertices).max() <= mesh_input.NORMALISED_HALF_EXTENT + COORDINATE_TOLERANCE
    assert half_extents(mesh.vertices).max() == pytest.approx(mesh_input.NORMALISED_HALF_EXTENT, abs=COORDINATE_TOLERANCE)
    assert trimesh.Trimesh(mesh.vertices, mesh.faces).is_watertight


def test_glb_node_transforms_are_applied_and_a_mirroring_node_keeps_the_faces_outward():
    scene = trimesh.Scene()
    box = trimesh.creation.box(extents=[1.0, 1.0, 1.0])
    scene.add_geometry(box, node_name="left", transform=trimesh.transformations.translation_matrix([-3, 0, 0]))
    mirror = np.diag([-1.0, 1.0, 1.0, 1.0])
    mirror[0, 3] = 3.0
    scene.add_geometry(box, node_name="right_mirrored", transform=mirror)
    vertices, faces = mesh_input.parse_mesh_file(file_bytes(scene, "glb"))
    assert len(faces) == 2 * len(box.faces)
    np.testing.assert_allclose(vertices.min(axis=0), [-3.5, -0.5, -0.5])
    np.testing.assert_allclose(vertices.max(axis=0), [3.5, 0.5, 0.5])
    for part in (slice(0, len(box.faces)), slice(len(box.faces), None)):
        piece = trimesh.Trimesh(vertices, faces[part], process=True)
        assert piece.volume > 0  # outward-facing triangles


def test_obj_polygons_are_triangulated_and_seam_split_vertices_welded():
    # A unit quad split along a UV seam: the four corners appear twice, as OBJ exporters write them.
    obj = b"""v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0 0 0\nv 1 1 0\nv 0.5 0.5 1\nvt 0 0\nvt 1 0\nvt 1 1
vt 0 1\nf 1/1 2/2 3/3 4/4\nf 6/3 5/1 7/2\n"""
    mesh = mesh_input.prepare_mesh(obj, face_count=1000)
    assert len(mesh.faces) == 3  # the quad's two triangles and the one on the copies of its corners
    assert len(mesh.vertices) == 5  # vertices 5 and 6 are welded onto 1 and 3


def test_a_triangle_repeated_on_the_same_vertices_is_kept_once_in_either_winding():
    obj = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nf 1 2 3\nf 3 2 1\nf 2 3 1\nf 2 4 3\n"
    mesh = mesh_input.prepare_mesh(obj, face_count=1000)
    assert sorted(map(sorted, mesh.faces.tolist())) == [[0, 1, 2], [1, 2, 3]]


def test_a_ply_file_with_colours_and_normals_gives_just_the_geometry():
    source = sphere(subdivisions=2)
    source.visual.vertex_colors = np.tile([200, 10, 10, 255], (len(source.vertices), 1)).astype(np.uint8)
    mesh = mesh_input.prepare_mesh(source.export(file_type="ply", encoding="ascii"), face_count=1000)
    assert len(mesh.faces) == len(source.faces)


BAD_MESHES = [
    ("empty", b"", "empty"),
    ("binary junk", b"\x00\x01\x02junk" * 100, "not a GLB, OBJ or PLY file"),
    ("gltf json", b'{"asset": {"version": "2.0"}}', "send the binary .glb"),
    ("truncated glb", file_bytes(sphere(2), "glb")[:500], "cannot be parsed as GLB"),
    ("obj without faces", b"v 0 0 0\nv 1 0 0\nv 0 1 0\n", "holds no triangles"),
    ("obj text that is no mesh", b"hello, world\n", "holds no triangles"),
    ("ply header only", b"ply\nformat ascii 1.0\nelement vertex 3\nend_header\n", "cannot be parsed as PLY"),
    ("ply without end_header", b"ply\nformat ascii 1.0\nelement vertex 3\n", "no end_header"),
    ("ply bomb", b"ply\nformat binary_little_endian 1.0\nelement vertex 4000000000\nproperty float x\n"
                 b"property float y\nproperty float z\nend_header\n", "declares 4000000000 vertices"),
    ("nan vertex", b"v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n", "must be finite"),
    ("infinite vertex", b"v 0 0 0\nv 1 0 0\nv 0 inf 0\nf 1 2 3\n", "must be finite"),
    ("degenerate", b"v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", "degenerate"),
]


@pytest.mark.parametrize(("case", "data", "expected"), BAD_MESHES, ids=[case for case, _, _ in BAD_MESHES])
def test_a_bad_mesh_file_is_refused_naming_mesh(case, data, expected):
    with pytest.raises(ContractError) as caught:
        mesh_input.prepare_mesh(data, face_count=1000)
    assert caught.value.field == contract.MESH_INPUT
    assert expected in str(caught.value)


def test_a_mesh_over_the_face_and_vertex_limits_is_refused_naming_them(monkeypatch):
    data = file_bytes(sphere(subdivisions=3), "glb")  # 1280 faces, 642 vertices
    monkeypatch.setattr(contract, "MAX_MESH_FILE_FACES", 1000)
    with pytest.raises(ContractError, match="the mesh has 1280 triangles; at most 1000 allowed"):
        mesh_input.prepare_mesh(data, face_count=1000)
    monkeypatch.setattr(contract, "MAX_MESH_FILE_FACES", 10_000)
    monkeypatch.setattr(contract, "MAX_MESH_FILE_VERTICES", 600)
    with pytest.raises(ContractError, match="the mesh has 642 vertices; at most 600 allowed"):
        mesh_input.prepare_mesh(data, face_count=1000)


def test_a_mesh_file_over_the_byte_limit_is_refused_before_parsing(monkeypatch):
    data = file_bytes(sphere(subdivisions=2), "obj")
    monkeypatch.setattr(contract, "MAX_MESH_FILE_BYTES", len(data) - 1)
    with pytest.raises(ContractError, match=f"mesh file is {len(data)} bytes; at most {len(data) - 1}"):
        mesh_input.prepare_mesh(data, face_count=1000)


def test_the_mesh_tensor_must_be_one_bytes_element():
    getter = {"MESH": np.array([1, 2], dtype=np.int32)}.get
    with pytest.raises(ContractError, match="MESH: expected dtype BYTES"):
        mesh_input.read_mesh_file(getter)
    with pytest.raises(ContractError, match=r"MESH: expected one file \(shape \[1\]\), got shape \[2\]"):
        mesh_input.read_mesh_file({"MESH": np.array([b"a", b"b"], dtype=np.object_)}.get)
    with pytest.raises(ContractError, match="MESH: required input is missing"):
        mesh_input.read_mesh_file({}.get)
    data = file_bytes(sphere(1), "glb")
    assert mesh_input.read_mesh_file({"MESH": np.array([data], dtype=np.object_)}.get) == data


# ---------------------------------------------------------------------------------------------------
# hy3d_texture in-process: its BLS calls served by the real preprocess and paint_pbr model.py files
# ---------------------------------------------------------------------------------------------------


class UVPainter:
    """A quick paint engine for paint_pbr in-process: planar UVs and two small textures."""

    name = "uv-painter"

    def paint(self, mesh, image, *, seed, callback=None):
        from trimesh.visual.material import PBRMaterial

        uv = (mesh.vertices[:, :2] - mesh.vertices[:, :2].min(axis=0)) / np.ptp(mesh.vertices[:, :2], axis=0)
        material = PBRMaterial(baseColorTexture=image.convert("RGB").resize((32, 32)),
                               metallicRoughnessTexture=Image.new("RGB", (32, 32), (0, 128, 0)))
        return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False,
                               visual=trimesh.visual.TextureVisuals(uv=uv, material=material))


class BLS:
    """What Triton does for a BLS ``InferenceRequest(model_name=...).exec()``: run the named model."""

    def __init__(self, pb, models):
        self.pb, self.models, self.calls = pb, models, []
        self.client_request = pb.InferenceRequest  # the stand-in's request class, before it is replaced

    def request(self, inputs=None, request_id="", *, model_name=None, requested_output_names=(), **_):
        if model_name is None:  # a client request, as the test sends it
            return self.client_request(inputs, request_id)
        bls = self

        class Request:
            def exec(self):
                bls.calls.append((model_name, {t.name(): t.as_numpy() for t in inputs}, request_id))
                (answer,) = bls.models[model_name].execute(
                    [bls.client_request({t.name(): t.as_numpy() for t in inputs}, request_id)])
                return Answer(answer, requested_output_names)

        return Request()


class Answer:
    """A BLS response: ``has_error()``, ``error()`` and the outputs asked for."""

    def __init__(self, response, names):
        self._error = response.error
        self.outputs = {name: response.outputs[name] for name in names if name in response.outputs}

    def has_error(self):
        return self._error is not None

    def error(self):
        return self._error


@pytest.fixture
def in_process(monkeypatch):
    import sys

    from hy3d_serving.logs import TritonLogHandler

    from . import fake_pb_utils as pb

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb.as_module())
    models = {}
    preprocess = pb.load_model("preprocess")
    paint = pb.load_model("paint_pbr")
    monkeypatch.setattr(paint, "load_paint_engine", lambda config: UVPainter())
    for name, module in (("preprocess", preprocess), ("paint_pbr", paint)):
        models[name] = module.TritonPythonModel()
        models[name].initialize(pb.model_args(name))
    bls = BLS(pb, models)
    monkeypatch.setattr(pb, "InferenceRequest", bls.request, raising=True)
    monkeypatch.setattr(pb, "get_output_tensor_by_name",
                        lambda response, name: pb.Tensor(name, response.outputs[name]) if name in response.outputs
                        else None, raising=False)
    texture_model = pb.load_model("hy3d_texture").TritonPythonModel()
    texture_model.initialize(pb.model_args("hy3d_texture"))
    yield texture_model, bls, pb
    root = __import__("logging").getLogger()
    for handler in [h for h in root.handlers if isinstance(h, TritonLogHandler)]:
        root.removeHandler(handler)


def texture_inputs(mesh: bytes, image: np.ndarray | None = None, **parameters) -> dict[str, np.ndarray]:
    inputs = {"MESH": np.array([mesh], dtype=np.object_), "IMAGE": example_rgba() if image is None else image}
    for key, value in parameters.items():
        parameter = contract.PARAMETERS_BY_KEY[key]
        inputs[parameter.name] = contract.parameter_tensor(parameter, value)
    return inputs


def test_in_process_the_model_answers_every_request_in_order_with_the_stages_outputs(in_process):
    model, bls, pb = in_process
    good = texture_inputs(file_bytes(sphere(3), "glb"), seed=8, face_count=1000, texture_format="png")
    bad = texture_inputs(b"v 0 0 0\n")
    responses = model.execute([pb.InferenceRequest(good, "req-1"), pb.InferenceRequest(bad, "req-2"),
                               pb.InferenceRequest(good, "req-3")])
    assert [r.error is None for r in responses] == [True, False, True]
    assert responses[1].error.code() == "INVALID_ARG"
    assert responses[1].error.message() == "hy3d_texture: invalid input MESH: the OBJ file holds no triangles"
    outputs = responses[0].outputs
    assert set(outputs) == {"GLB", "TEXTURED", "SEED_USED", "ENGINE"}
    assert outputs["GLB"][0][:4] == b"glTF" and outputs["GLB"][0] == responses[2].outputs["GLB"][0]
    assert (bool(outputs["TEXTURED"][0]), int(outputs["SEED_USED"][0])) == (True, 8)
    assert outputs["ENGINE"][0] == b"shape=input-mesh;paint=uv-painter"
    # The bad mesh was refused before any stage was called; each call carries the client's request id.
    assert [(model_name, request_id) for model_name, _, request_id in bls.calls] == [
        ("preprocess", "req-1"), ("paint_pbr", "req-1"), ("preprocess", "req-3"), ("paint_pbr", "req-3")]


def test_in_process_paint_gets_the_normalised_reduced_mesh_always_textured(in_process):
    model, bls, pb = in_process
    model.execute([pb.InferenceRequest(texture_inputs(file_bytes(sphere(4), "ply"), face_count=1000, seed=4))])
    (_, sent_to_preprocess, _), (_, sent_to_paint, _) = bls.calls
    assert set(sent_to_preprocess) == {"IMAGE", *contract.TEXTURE_MODEL_PARAMETERS}
    assert bool(sent_to_paint["TEXTURE"][0]) and sent_to_paint["SHAPE_ENGINE"][0] == b"input-mesh"
    assert sent_to_paint["TEXTURE_FORMAT"][0] == b"jpeg" and int(sent_to_paint["SEED"][0]) == 4
    vertices, faces = sent_to_paint["VERTICES"], sent_to_paint["FACES"]
    assert (vertices.dtype, faces.dtype) == (np.float32, np.int32)
    assert (1 - FACE_COUNT_TOLERANCE) * 1000 <= len(faces) <= 1000
    np.testing.assert_allclose(half_extents(vertices), [1.0, 2 / 3, 1 / 3], atol=1e-2)


def test_in_process_a_stage_refusal_comes_back_naming_the_input_and_the_stage(in_process):
    model, _bls, pb = in_process
    (response,) = model.execute([pb.InferenceRequest(texture_inputs(file_bytes(sphere(1), "glb"),
                                                                    np.zeros((16, 16, 4), np.uint8)))])
    assert response.error.code() == "INVALID_ARG"
    assert response.error.message() == ("hy3d_texture: invalid input IMAGE: the object mask is empty: its alpha "
                                        "channel is 0 everywhere (in preprocess)")


def test_in_process_a_stage_failure_is_an_internal_error_naming_the_stage(in_process, monkeypatch):
    model, bls, pb = in_process

    class Broken(UVPainter):
        def paint(self, mesh, image, *, seed, callback=None):
            raise RuntimeError("out of paint")

    monkeypatch.setattr(bls.models["paint_pbr"], "engine", Broken())
    (response,) = model.execute([pb.InferenceRequest(texture_inputs(file_bytes(sphere(1), "glb")))])
    assert response.error.code() == "INTERNAL"
    assert response.error.message() == "hy3d_texture failed: paint_pbr failed: RuntimeError: out of paint"


# ---------------------------------------------------------------------------------------------------
# hy3d_texture through tritonserver
# ---------------------------------------------------------------------------------------------------


def client_for(server, protocol: str) -> Hy3DClient:
    return Hy3DClient(server.http_url if protocol == "http" else server.grpc_url, protocol,
                      timeout_s=REQUEST_TIMEOUT_S)


@pytest.fixture(scope="module")
def textured_glb_http(triton_server):
    return client_for(triton_server, "http").texture_result(file_bytes(sphere(), "glb"), example_rgba(), **SMALL)


@pytest.mark.integration
def test_a_glb_mesh_comes_back_textured_validated_and_named(textured_glb_http, tmp_path):
    result = textured_glb_http
    assert (result.textured, result.seed) == (True, SMALL["seed"])
    assert result.engine == "shape=input-mesh;paint=builtin-projection"
    assert base_color_textures(result.glb)
    assert face_count(result.glb) <= SMALL["face_count"]
    report = validation_report(result.glb, tmp_path)
    assert report["numErrors"] == 0, report["messages"]


@pytest.mark.integration
def test_the_textured_mesh_is_the_normalised_reduced_input(textured_glb_http):
    mesh = load_mesh(textured_glb_http.glb)
    assert (1 - FACE_COUNT_TOLERANCE) * SMALL["face_count"] <= len(mesh.faces) <= SMALL["face_count"]
    np.testing.assert_allclose(centre(mesh.vertices), 0.0, atol=1e-3)
    np.testing.assert_allclose(half_extents(mesh.vertices), [1.0, 2 / 3, 1 / 3], atol=1e-2)


@pytest.mark.integration
def test_grpc_gives_the_same_bytes_as_http(triton_server, textured_glb_http):
    again = client_for(triton_server, "grpc").texture_result(file_bytes(sphere(), "glb"), example_rgba(), **SMALL)
    assert again.glb == textured_glb_http.glb


@pytest.mark.integration
@pytest.mark.parametrize(("file_type", "protocol"), [("obj", "grpc"), ("ply", "http")])
def test_obj_and_ply_meshes_are_textured_too(triton_server, file_type, protocol, tmp_path):
    mesh = trimesh.creation.box(extents=[2.0, 1.0, 1.0]).subdivide().subdivide()  # 192 faces: kept as is
    result = client_for(triton_server, protocol).texture_result(file_bytes(mesh, file_type), example_rgba(),
                                                                 seed=3, texture_format="png")
    assert face_count(result.glb) == len(mesh.faces)
    assert base_color_textures(result.glb) and result.textured
    assert validation_report(result.glb, tmp_path)["numErrors"] == 0


def tensor(protocol: str, name: str, array: np.ndarray, dtype: str):
    entry = CLIENTS[protocol].InferInput(name, list(array.shape), dtype)
    entry.set_data_from_numpy(array, **({"binary_data": True} if protocol == "http" else {}))
    return entry


def send(server, protocol: str, inputs) -> InferenceServerException:
    url = server.http_url if protocol == "http" else server.grpc_url
    client = CLIENTS[protocol].InferenceServerClient(url, **({"network_timeout": REQUEST_TIMEOUT_S}
                                                             if protocol == "http" else {}))
    with pytest.raises(InferenceServerException) as caught:
        client.infer(contract.TEXTURE_MODEL, inputs)
    assert is_ready(server.http_url), "the server is no longer ready after a bad request"
    return caught.value


def mesh_tensor(protocol: str, data: bytes):
    return tensor(protocol, "MESH", np.array([data], dtype=np.object_), "BYTES")


def image_tensor(protocol: str, image: np.ndarray | None = None):
    return tensor(protocol, "IMAGE", example_rgba() if image is None else image, "UINT8")


SERVER_BAD_MESHES = [
    ("truncated glb", file_bytes(sphere(2), "glb")[:500], "cannot be parsed as GLB"),
    ("no triangles", b"v 0 0 0\nv 1 0 0\n", "the OBJ file holds no triangles"),
    ("not finite", b"v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n", "must be finite"),
    ("binary junk", b"\x00junk" * 64, "not a GLB, OBJ or PLY file"),
]


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize(("case", "data", "expected"), SERVER_BAD_MESHES, ids=[c for c, _, _ in SERVER_BAD_MESHES])
def test_a_bad_mesh_is_refused_naming_mesh_and_the_server_stays_ready(triton_server, protocol, case, data, expected):
    error = send(triton_server, protocol, [mesh_tensor(protocol, data), image_tensor(protocol)])
    assert error.status() == INVALID_STATUS[protocol]
    assert error.message().startswith("hy3d_texture: invalid input MESH: ") and expected in error.message()


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_missing_mesh_or_image_is_refused_naming_it(triton_server, protocol):
    error = send(triton_server, protocol, [image_tensor(protocol)])
    assert error.status() == INVALID_STATUS[protocol]
    assert "hy3d_texture: invalid input MESH: required input is missing" in error.message()
    error = send(triton_server, protocol, [mesh_tensor(protocol, file_bytes(sphere(1), "glb"))])
    assert "hy3d_texture: invalid input IMAGE: required input is missing" in error.message()


#: An image whose object mask is empty, of a size no other test sends.
EMPTY_MASK = np.zeros((40, 24, 4), np.uint8)
EMPTY_MASK_ERROR = ("hy3d_texture: invalid input IMAGE: the object mask is empty: its alpha channel is 0 "
                    "everywhere (in preprocess)")


@pytest.mark.integration
def test_an_empty_object_mask_is_refused_by_preprocess_naming_image(triton_server):
    inputs = [mesh_tensor("http", file_bytes(sphere(1), "glb")), image_tensor("http", EMPTY_MASK)]
    error = send(triton_server, "http", inputs)
    assert error.status() == "400"
    assert error.message() == EMPTY_MASK_ERROR


@pytest.mark.integration
def test_the_same_bad_mesh_sent_again_is_refused_again(triton_server):
    data = b"v 0 0 0\nv 1 0 0\nv 0 7 0\n"  # no faces
    for _ in range(2):
        error = send(triton_server, "grpc", [mesh_tensor("grpc", data), image_tensor("grpc")])
        assert error.status() == INVALID_STATUS["grpc"]
        assert "invalid input MESH: the OBJ file holds no triangles" in error.message()


@pytest.mark.integration
def test_the_same_empty_mask_sent_again_is_refused_again(triton_server):
    # Guards against a response_cache on preprocess: Triton 2.51 would replay its error as an empty success.
    inputs = [mesh_tensor("http", file_bytes(sphere(1), "glb")), image_tensor("http", EMPTY_MASK)]
    for _ in range(2):
        assert send(triton_server, "http", inputs).message() == EMPTY_MASK_ERROR


@pytest.mark.integration
def test_a_bad_parameter_and_a_shape_parameter_are_refused_naming_them(triton_server):
    mesh = mesh_tensor("grpc", file_bytes(sphere(1), "glb"))
    face_count_input = tensor("grpc", "FACE_COUNT", np.array([10], np.int32), "INT32")
    error = send(triton_server, "grpc", [mesh, image_tensor("grpc"), face_count_input])
    assert "hy3d_texture: invalid input FACE_COUNT: 10 is out of range" in error.message()
    octree = tensor("grpc", "OCTREE_RESOLUTION", np.array([64], np.int32), "INT32")
    error = send(triton_server, "grpc", [mesh, image_tensor("grpc"), octree])
    assert "'OCTREE_RESOLUTION'" in error.message()


def test_module_reads_meshes_from_memory_only(monkeypatch, tmp_path):
    """No temp files: parsing works with the temp dir and the working directory unwritable."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    monkeypatch.chdir(tmp_path)
    mesh_input.prepare_mesh(file_bytes(sphere(2), "glb"), face_count=1000)
    assert list(tmp_path.iterdir()) == []
