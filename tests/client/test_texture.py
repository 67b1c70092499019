"""Texturing an existing mesh from the client: ``Hy3DClient.texture``, ``hy3d-client texture`` and the worker
job's ``mesh`` key, against the real tritonserver (built-in engines) and the real S3 server (SeaweedFS).

Promises: a mesh file (path or bytes; base64 in a job) and an image go to ``hy3d_texture`` with the
parameters that model takes, and the GLB comes back, the same bytes over gRPC and HTTP, by the SDK, the
CLI and the worker; a mesh the client can tell is bad (missing, empty, too large, not a mesh file) and a
parameter of the shape stage are refused before the server is called; a mesh the server refuses comes
back as an error naming MESH, and nothing is uploaded.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
import tritonclient.grpc as grpcclient
from hy3d_client import Hy3DClient, handle, texture
from hy3d_client.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main
from hy3d_client.contract import MESH_INPUT, TEXTURE_MODEL_PARAMETERS, ContractError
from hy3d_client.meshes import decode_base64_mesh, load_mesh_file
from hy3d_client.request import TextureRequest
from hy3d_client.worker import parse_job

from .samples import encode_png, object_photo
from .test_upload import download
from .test_worker_bad_input import R2_PLACEHOLDERS

#: A budget that keeps one texturing request to seconds on a 2-core machine.
SMALL = {"face_count": 1000, "seed": 11}
ENGINE = "shape=input-mesh;paint=builtin-projection"


def sphere_glb(subdivisions: int = 3) -> bytes:
    return trimesh.creation.icosphere(subdivisions=subdivisions).export(file_type="glb")


def box_obj() -> bytes:
    return trimesh.creation.box().subdivide().export(file_type="obj").encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def url_of(server, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


def assert_is_glb(data: bytes) -> None:
    assert data[:4] == b"glTF" and int.from_bytes(data[8:12], "little") == len(data)


@pytest.fixture
def mesh_file(tmp_path: Path) -> Path:
    path = tmp_path / "ball.glb"
    path.write_bytes(sphere_glb())
    return path


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    path = tmp_path / "ball.png"
    path.write_bytes(encode_png(object_photo(64)))
    return path


def run(argv: list[str]) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    status = main(argv, stdout=stdout, stderr=stderr)
    return status, stdout.getvalue(), stderr.getvalue()


# ---------------------------------------------------------------------------------------------------
# Checked on the client, nothing sent
# ---------------------------------------------------------------------------------------------------


def test_a_texture_request_sends_the_mesh_file_the_image_and_only_the_texture_parameters():
    mesh = sphere_glb(1)
    request = TextureRequest.build(mesh, np.zeros((16, 16, 4), np.uint8), {"seed": 5, "texture_format": "png"})
    tensors = {name: (dtype, array) for name, dtype, array in request.tensors()}
    assert list(tensors) == [MESH_INPUT, "IMAGE", *TEXTURE_MODEL_PARAMETERS]
    dtype, array = tensors[MESH_INPUT]
    assert dtype == "BYTES" and array.shape == (1,) and array[0] == mesh
    assert tensors["SEED"][1][0] == 5 and tensors["TEXTURE_FORMAT"][1][0] == b"png"
    inputs = request.triton_inputs(grpcclient)
    assert [entry.name() for entry in inputs] == list(tensors)


def test_a_mesh_is_read_from_a_path_or_bytes_and_from_base64_in_a_job(mesh_file):
    data = mesh_file.read_bytes()
    assert load_mesh_file(mesh_file) == load_mesh_file(str(mesh_file)) == load_mesh_file(data) == data
    assert decode_base64_mesh(b64(data)) == data
    wrapped = "\n".join(b64(data)[i:i + 76] for i in range(0, len(b64(data)), 76))
    assert decode_base64_mesh(wrapped) == data


@pytest.mark.parametrize(("mesh", "expected"), [
    ("no/such/mesh.glb", "is not an existing file"),
    (b"", "empty"),
    (b"\x00\x01binary" * 10, "not a GLB, OBJ or PLY file"),
    (b'{"asset": {"version": "2.0"}}', "send the binary .glb"),
    (12, "expected a path or the bytes"),
])
def test_a_mesh_the_client_can_tell_is_bad_is_refused_naming_mesh(mesh, expected):
    with pytest.raises(ContractError) as caught:
        load_mesh_file(mesh)
    assert caught.value.field == "mesh" and expected in str(caught.value)


def test_a_mesh_file_over_the_size_limit_is_refused_before_it_is_read(mesh_file, monkeypatch):
    from hy3d_client import contract, meshes

    monkeypatch.setattr(meshes, "MAX_MESH_FILE_BYTES", 100)
    monkeypatch.setattr(contract, "MAX_MESH_FILE_BYTES", 100)
    with pytest.raises(ContractError, match="at most 100 bytes allowed"):
        load_mesh_file(mesh_file)
    with pytest.raises(ContractError, match="at most 100 bytes allowed"):
        load_mesh_file(mesh_file.read_bytes())


def test_sdk_refuses_a_shape_parameter_and_a_bad_format_without_calling_the_server(counting_listener, mesh_file,
                                                                                   image_file):
    client = Hy3DClient(counting_listener.url, "grpc")
    with pytest.raises(ContractError, match="octree_resolution: unknown parameter; allowed: face_count"):
        client.texture(mesh_file, image_file, octree_resolution=64)
    with pytest.raises(ContractError, match="texture_format: the string 'tiff' is not allowed"):
        client.texture(mesh_file, image_file, texture_format="tiff")
    with pytest.raises(ContractError, match="mesh: "):
        client.texture(b"\x00junk", image_file)
    assert counting_listener.connections == 0


BAD_TEXTURE_JOBS = {
    "mesh_not_base64": ({"mesh": "not base64 at all!"}, "mesh", "not valid base64"),
    "mesh_not_a_mesh": ({"mesh": b64(b"\x00\x01\x02" * 50)}, "mesh", "not a GLB, OBJ or PLY file"),
    "mesh_not_a_string": ({"mesh": 5}, "mesh", "expected a base64 string"),
    "shape_parameter": ({"mesh": b64(sphere_glb(1)), "octree_resolution": 64}, "octree_resolution",
                        "not a parameter of a job with a 'mesh'"),
    "untextured": ({"mesh": b64(sphere_glb(1)), "texture": False}, "texture", "not a parameter of a job"),
    "bad_format": ({"mesh": b64(sphere_glb(1)), "texture_format": "gif"}, "texture_format", "not allowed"),
    "no_image": ({"mesh": b64(sphere_glb(1)), "image": None}, "image", "required"),
}


@pytest.mark.parametrize("case", sorted(BAD_TEXTURE_JOBS))
def test_a_bad_texture_job_gives_an_error_naming_the_field_without_calling_the_server(case, counting_listener,
                                                                                      monkeypatch, object_png_b64):
    monkeypatch.setenv("HY3D_TRITON_URL", counting_listener.url)
    for name, value in R2_PLACEHOLDERS.items():
        monkeypatch.setenv(name, value)
    extra, field, detail = BAD_TEXTURE_JOBS[case]
    response = handle({"image": object_png_b64, **extra})
    assert set(response) == {"error"}
    assert response["error"].startswith(f"{field}: ") and detail in response["error"], response
    assert counting_listener.connections == 0


def test_a_job_with_a_mesh_becomes_a_texture_request(object_png_b64):
    request = parse_job({"image": object_png_b64, "mesh": b64(box_obj()), "seed": 3, "texture_format": "webp"})
    assert isinstance(request, TextureRequest)
    assert request.mesh == box_obj()
    assert dict(request.parameters) == {"remove_background": True, "seed": 3, "face_count": 40000,
                                        "texture_format": "webp"}


def test_cli_texture_refuses_a_bad_mesh_file_and_format_without_a_request(tmp_path, image_file, counting_listener,
                                                                          capsys):
    junk = tmp_path / "junk.glb"
    junk.write_bytes(b"\x00" * 64)
    status, out, err = run(["texture", str(junk), str(image_file), "--url", counting_listener.url])
    assert status == EXIT_USAGE and out == ""
    assert err.startswith("hy3d-client: error: MESH: not a GLB, OBJ or PLY file")
    with pytest.raises(SystemExit) as caught:
        main(["texture", str(junk), str(image_file), "--texture-format", "gif"])
    assert caught.value.code == EXIT_USAGE
    assert "--texture-format: invalid choice: 'gif'" in capsys.readouterr().err
    assert counting_listener.connections == 0


# ---------------------------------------------------------------------------------------------------
# Against the real servers
# ---------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_sdk_textures_a_mesh_the_same_over_grpc_and_http(triton_server, mesh_file, image_file):
    over_grpc = Hy3DClient(triton_server.grpc_url, "grpc").texture_result(mesh_file, image_file, **SMALL)
    assert (over_grpc.engine, over_grpc.seed, over_grpc.textured) == (ENGINE, SMALL["seed"], True)
    assert_is_glb(over_grpc.glb)
    over_http = texture(mesh_file.read_bytes(), object_photo(64), url=triton_server.http_url, protocol="http",
                        **SMALL)
    assert over_http == over_grpc.glb


@pytest.mark.integration
def test_cli_texture_writes_the_glb_and_prints_a_summary(triton_server, mesh_file, image_file, tmp_path):
    out = tmp_path / "textured.glb"
    status, stdout, err = run(["texture", str(mesh_file), str(image_file), "--out", str(out), "--seed", "11",
                               "--face-count", "1000", "--texture-format", "png", "--url", triton_server.grpc_url])
    assert status == EXIT_OK, err
    summary = json.loads(stdout)
    assert summary["path"] == str(out) and summary["bytes"] == out.stat().st_size
    assert (summary["engine"], summary["textured"], summary["seed"]) == (ENGINE, True, 11)
    assert_is_glb(out.read_bytes())


@pytest.mark.integration
def test_cli_texture_reports_a_mesh_the_server_refuses(triton_server, tmp_path, image_file):
    no_faces = tmp_path / "points.obj"
    no_faces.write_bytes(b"v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    status, out, err = run(["texture", str(no_faces), str(image_file), "--out", str(tmp_path / "x.glb"),
                            "--url", triton_server.http_url, "--protocol", "http"])
    assert status == EXIT_FAILURE and out == ""
    assert "hy3d_texture: invalid input MESH: the OBJ file holds no triangles" in err
    assert not (tmp_path / "x.glb").exists()


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_mesh_job_comes_back_as_a_link_to_the_textured_glb(protocol, triton_server, r2_env, monkeypatch,
                                                             isolated_dirs, object_png_b64):
    monkeypatch.setenv("HY3D_TRITON_URL", url_of(triton_server, protocol))
    monkeypatch.setenv("HY3D_TRITON_PROTOCOL", protocol)
    mesh = box_obj()
    response = handle({"image": object_png_b64, "mesh": b64(mesh), **SMALL})
    assert set(response) == {"download_url", "textured", "seed", "uid"}, response
    assert (response["textured"], response["seed"]) == (True, SMALL["seed"])
    status, body, _content_type = download(response["download_url"])
    assert status == 200
    same = Hy3DClient(url_of(triton_server, protocol), protocol).texture(mesh, base64.b64decode(object_png_b64),
                                                                          **SMALL)
    assert body == same
    assert isolated_dirs.leftovers() == []


@pytest.mark.integration
def test_cli_texture_upload_prints_a_link(triton_server, r2_env, mesh_file, image_file):
    status, stdout, err = run(["texture", str(mesh_file), str(image_file), "--upload", "--face-count", "1000",
                               "--url", triton_server.grpc_url])
    assert status == EXIT_OK, err
    summary = json.loads(stdout)
    assert set(summary) == {"download_url", "textured", "seed", "uid"}
    status, body, _content_type = download(summary["download_url"])
    assert status == 200
    assert_is_glb(body)


@pytest.mark.integration
def test_a_mesh_job_the_server_refuses_uploads_nothing(triton_server, r2_env, monkeypatch, object_png_b64):
    monkeypatch.setenv("HY3D_TRITON_URL", triton_server.grpc_url)
    before = r2_env.object_keys()
    response = handle({"image": object_png_b64, "mesh": b64(b"v 0 0 0\nv nan 1 0\nv 1 0 0\nf 1 2 3\n")})
    assert set(response) == {"error"}
    assert "hy3d_texture: invalid input MESH: every vertex coordinate must be finite" in response["error"]
    assert r2_env.object_keys() == before
