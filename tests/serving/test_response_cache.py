"""Response cache: a repeated request (same image and parameters) is a hit of Triton's response cache,
comes back byte for byte, and costs a small fraction of the first one; a repeated bad request gets the
same refusal again, never a cached answer."""

from __future__ import annotations

import time
import urllib.request

import pytest

from .ensemble_client import generate
from .test_ensemble import example_rgba

pytestmark = pytest.mark.integration

#: A request of seconds with the built-in engines, of its own (seed), so that the first one is a miss.
REQUEST = {"octree_resolution": 128, "face_count": 10000, "seed": 52001}
#: The repeat must cost under this fraction of the first request's time (a functional check: a hit skips
#: every stage).
MAX_REPEAT_COST = 0.10


def cache_hits(metrics_url: str, model: str) -> int:
    """``nv_cache_num_hits_per_model`` of ``model``."""
    with urllib.request.urlopen(f"http://{metrics_url}/metrics", timeout=10) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("nv_cache_num_hits_per_model{") and f'model="{model}"' in line:
                return int(float(line.rsplit(" ", 1)[1]))
    raise AssertionError(f"no nv_cache_num_hits_per_model for {model}: is the response cache on?")


@pytest.fixture(scope="module")
def cached_server(serve_model_repository, tmp_path_factory):
    """A server with the documented default response cache (the shared test server runs without one)."""
    from hy3d_serving import settings

    server = serve_model_repository(tmp_path_factory.mktemp("cache") / "server.log",
                                    {"HY3D_CACHE_BYTES": settings.CACHE_BYTES.default})
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_repeated_request_is_a_byte_identical_cache_hit_at_a_fraction_of_the_cost(cached_server, protocol):
    triton_server = cached_server
    url = triton_server.http_url if protocol == "http" else triton_server.grpc_url
    request = {**REQUEST, "seed": REQUEST["seed"] + (protocol == "grpc")}
    hits_before = cache_hits(triton_server.metrics_url, "hy3d_ensemble")
    started = time.perf_counter()
    first = generate(url, protocol, example_rgba(), request)
    first_s = time.perf_counter() - started
    assert cache_hits(triton_server.metrics_url, "hy3d_ensemble") == hits_before  # the first one was computed

    started = time.perf_counter()
    repeat = generate(url, protocol, example_rgba(), request)
    repeat_s = time.perf_counter() - started
    print(f"{protocol}: first {first_s:.2f} s, repeat {repeat_s:.3f} s ({repeat_s / first_s:.1%})")
    assert cache_hits(triton_server.metrics_url, "hy3d_ensemble") == hits_before + 1
    assert repeat.glb == first.glb
    assert (repeat.engine, repeat.textured, repeat.seed) == (first.engine, first.textured, first.seed)
    assert repeat_s < MAX_REPEAT_COST * first_s


def test_a_repeated_bad_request_is_refused_again_naming_the_input(cached_server):
    import numpy as np
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    image = example_rgba()
    hits_before = {model: cache_hits(cached_server.metrics_url, model) for model in ("hy3d_ensemble",)}
    client = httpclient.InferenceServerClient(cached_server.http_url)
    for model in ("preprocess", "hy3d_ensemble", "preprocess", "hy3d_ensemble"):
        tensors = [httpclient.InferInput("IMAGE", list(image.shape), "UINT8"),
                   httpclient.InferInput("OCTREE_RESOLUTION", [1], "INT32")]
        tensors[0].set_data_from_numpy(image, binary_data=True)
        tensors[1].set_data_from_numpy(np.array([100000], dtype=np.int32))
        with pytest.raises(InferenceServerException) as refused:
            client.infer(model, tensors)
        assert refused.value.status() == "400"
        assert "preprocess: invalid input OCTREE_RESOLUTION: 100000 is out of range" in refused.value.message()
    assert cache_hits(cached_server.metrics_url, "hy3d_ensemble") == hits_before["hy3d_ensemble"]
