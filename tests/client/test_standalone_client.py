"""The client installed alone, as a user would: a fresh virtual environment with numpy 2 and the current
``tritonclient`` from the package registry, ``pip install client/`` (not editable, without the ``upload``
extra), nothing of the server's.

Promises: the package imports without any server module, torch or boto3; it builds the same request
tensors as the server environment's client (numpy 1.26, tritonclient 2.50); an upload asked for
without boto3 fails at once saying what to install; and it generates the very GLB the server
environment's client gets, over gRPC and HTTP, from the session's tritonserver. Skipped, with the
reason, only when the package registry cannot be reached.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import venv
from pathlib import Path

import pytest
from hy3d_client import generate
from hy3d_client.request import InferenceRequest

from .samples import encode_png, object_photo

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENT_DIR = Path(__file__).resolve().parents[2] / "client"
#: What the standalone environment gets from the registry: numpy 2 and the current tritonclient.
STANDALONE_REQUIREMENTS = ("numpy>=2", "tritonclient[http,grpc]>=2.73")
#: Seconds the venv creation and the installation may take on a 2-core machine.
INSTALL_TIMEOUT_S = 900
#: Seconds the script run inside the venv may take (two small requests).
SCRIPT_TIMEOUT_S = 600
#: Small settings that keep an untextured request under a second (as the end-to-end tests).
SMALL = {"octree_resolution": 64, "face_count": 1000, "seed": 4321, "texture": False}
#: pip output that means the registry could not be reached (not a problem of the client).
UNREACHABLE = re.compile(r"Failed to establish a new connection|Temporary failure in name resolution|"
                         r"Network is unreachable|Connection refused|ProxyError|Read timed out|"
                         r"Max retries exceeded|Could not fetch URL", re.IGNORECASE)
#: Top-level modules that must not be imported by the client.
FORBIDDEN = ("hy3d_serving", "hy3d_tooling", "hy3dshape", "hy3dpaint", "hy3dcore", "torch", "boto3", "botocore")

# Runs inside the standalone venv: python -I check.py IMAGE OUT_DIR PARAMETERS_JSON FORBIDDEN GRPC_URL HTTP_URL;
# writes <OUT_DIR>/{grpc,http}.glb and prints a JSON report.
SCRIPT = """
import hashlib, importlib.metadata, importlib.util, json, sys
from pathlib import Path

import numpy
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import hy3d_client
from hy3d_client import cli, contract, r2, request, sdk, transport, worker  # every public module
from hy3d_client.errors import UploadError
from hy3d_client.images import load_image

image_path, out_dir = sys.argv[1], Path(sys.argv[2])
parameters = json.loads(sys.argv[3])
report = {
    "numpy": numpy.__version__,
    "tritonclient": importlib.metadata.version("tritonclient"),
    "client_file": hy3d_client.__file__,
    "boto3_installed": importlib.util.find_spec("boto3") is not None,
    "forbidden_modules": sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[4].split(","))),
}
built = request.InferenceRequest.build(load_image(image_path), parameters)


def digest(array):
    if array.dtype == object:
        return hashlib.sha256(b"".join(array.ravel().tolist())).hexdigest()
    return hashlib.sha256(array.tobytes()).hexdigest()


report["tensors"] = [[name, dtype, list(array.shape), array.dtype.str, digest(array)]
                     for name, dtype, array in built.tensors()]
report["inputs"] = {module.__name__: [[i.name(), i.datatype(), list(i.shape())] for i in built.triton_inputs(module)]
                    for module in (grpcclient, httpclient)}
try:
    r2.R2Uploader(r2.R2Settings(endpoint_url="http://127.0.0.1:9", bucket="b", access_key="k", secret_key="s"))
except UploadError as error:
    report["upload_error"] = str(error)
for protocol, url in zip(("grpc", "http"), sys.argv[5:7]):
    glb = hy3d_client.generate(image_path, url=url, protocol=protocol, **parameters)
    (out_dir / f"{protocol}.glb").write_bytes(glb)
print(json.dumps(report))
"""


def content_digest(array) -> str:
    """sha256 of a tensor's values (the bytes of each element of a BYTES tensor, the raw buffer otherwise)."""
    if array.dtype == object:
        return hashlib.sha256(b"".join(array.ravel().tolist())).hexdigest()
    return hashlib.sha256(array.tobytes()).hexdigest()


def _run(command: list[str], timeout_s: float, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=cwd)


@pytest.fixture(scope="module")
def standalone_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a fresh venv holding only the client and what it declares (numpy 2, current tritonclient)."""
    root = tmp_path_factory.mktemp("standalone")
    source = root / "client"  # a copy, so that building the wheel leaves nothing in the checkout
    shutil.copytree(CLIENT_DIR, source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    venv.EnvBuilder(with_pip=True, clear=True).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    result = _run([str(python), "-m", "pip", "install", "--quiet", *STANDALONE_REQUIREMENTS, str(source)],
                  INSTALL_TIMEOUT_S, root)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        if UNREACHABLE.search(output):
            pytest.skip(f"the package registry cannot be reached: {output.strip().splitlines()[-1]}")
        pytest.fail(f"pip install of the standalone client failed:\n{output[-4000:]}")
    return python


@pytest.fixture(scope="module")
def image_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("image") / "object.png"
    path.write_bytes(encode_png(object_photo()))
    return path


@pytest.fixture(scope="module")
def standalone_run(standalone_python, image_path, triton_server, tmp_path_factory) -> tuple[dict, Path]:
    """The report of the script run in the standalone venv, and the folder with the GLBs it generated."""
    work = tmp_path_factory.mktemp("standalone_run")
    (work / "check.py").write_text(SCRIPT, encoding="utf-8")
    result = _run([str(standalone_python), "-I", str(work / "check.py"), str(image_path), str(work),
                   json.dumps(SMALL), ",".join(FORBIDDEN), triton_server.grpc_url, triton_server.http_url],
                  SCRIPT_TIMEOUT_S, work)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), work


def test_the_standalone_environment_has_numpy_2_and_the_current_tritonclient(standalone_run, standalone_python):
    report, _ = standalone_run
    assert int(report["numpy"].split(".")[0]) >= 2
    assert tuple(int(part) for part in report["tritonclient"].split(".")[:2]) >= (2, 73)
    assert Path(report["client_file"]).is_relative_to(standalone_python.parents[1])  # installed, not the checkout


def test_the_client_imports_no_server_code_no_torch_and_no_boto3(standalone_run):
    report, _ = standalone_run
    assert report["forbidden_modules"] == []
    assert report["boto3_installed"] is False


def test_it_builds_the_same_request_tensors_as_the_server_environments_client(standalone_run, image_path):
    report, _ = standalone_run
    from hy3d_client.images import load_image

    ours = InferenceRequest.build(load_image(str(image_path)), SMALL)
    assert report["tensors"] == [[name, dtype, list(array.shape), array.dtype.str, content_digest(array)]
                                 for name, dtype, array in ours.tensors()]
    expected_inputs = [[name, dtype, list(array.shape)] for name, dtype, array in ours.tensors()]
    assert report["inputs"] == {"tritonclient.grpc": expected_inputs, "tritonclient.http": expected_inputs}


def test_an_upload_without_boto3_fails_at_once_saying_what_to_install(standalone_run):
    report, _ = standalone_run
    assert "hy3d-client[upload]" in report.get("upload_error", "")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_it_generates_the_same_glb_as_the_server_environments_client(standalone_run, triton_server, image_path,
                                                                     protocol):
    _, work = standalone_run
    url = triton_server.grpc_url if protocol == "grpc" else triton_server.http_url
    glb = (work / f"{protocol}.glb").read_bytes()
    assert glb[:4] == b"glTF" and int.from_bytes(glb[8:12], "little") == len(glb)
    assert glb == generate(str(image_path), url=url, protocol=protocol, **SMALL)
