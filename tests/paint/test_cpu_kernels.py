"""The numba loops used on the CPU give the torch code's bits (rasterizer and bake)."""

import numpy as np
import pytest
import torch

from hy3dpaint.bake import bake_materials, view_sampling
from hy3dpaint.render import MeshRenderer, rasterizer
from hy3dpaint.view_selection import View


def _both_paths(monkeypatch, run):
    results = {}
    for use in (False, True):
        monkeypatch.setattr(rasterizer, "USE_CPU_KERNELS", use)
        results[use] = run()
    return results[False], results[True]


def _random_triangles(seed: int, vertices: int, faces: int, perspective: bool):
    generator = torch.Generator().manual_seed(seed)
    clip = torch.rand(vertices, 4, generator=generator) * 2.4 - 1.2
    clip[:, 2] = torch.rand(vertices, generator=generator) * 2 - 1
    clip[:, 3] = torch.rand(vertices, generator=generator) * 0.5 + 0.75 if perspective else 1.0
    return clip, torch.randint(0, vertices, (faces, 3), generator=generator)


@pytest.mark.parametrize(("seed", "vertices", "faces", "resolution", "perspective"), [
    (0, 3000, 6000, (300, 257), False),  # overlapping triangles of every size, partly off screen
    (1, 3000, 6000, (256, 256), True),
    (2, 40, 30, (512, 384), False),  # a few triangles wider than the image
    (3, 500, 20000, (64, 64), False),  # many triangles per pixel: the z-buffer's ties
])
def test_rasterizer_loops_give_the_torch_bits(monkeypatch, seed, vertices, faces, resolution, perspective):
    clip, triangles = _random_triangles(seed, vertices, faces, perspective)
    attributes = torch.rand(vertices, 3, generator=torch.Generator().manual_seed(seed + 100))

    def run():
        raster = rasterizer.rasterize(clip, triangles, resolution)
        pixel, weights = raster.covered_barycentrics()
        _, values = rasterizer.interpolate_covered(attributes, raster, triangles)
        _, doubles = rasterizer.interpolate_covered(attributes.double(), raster, triangles)
        return raster.face_ids.clone(), pixel, weights, values, doubles

    expected, result = _both_paths(monkeypatch, run)
    assert (expected[0] > 0).any()
    for name, want, got in zip(("face ids", "pixels", "barycentrics", "float32 values", "float64 values"),
                               expected, result):
        assert torch.equal(want, got), name


def test_rasterizer_loops_skip_degenerate_and_non_finite_triangles(monkeypatch):
    clip = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.5, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0],
                         [float("nan"), 0.2, 0.0, 1.0], [0.0, 0.5, 0.0, 1.0]])
    faces = torch.tensor([[0, 1, 2], [0, 3, 4], [0, 1, 4]])
    expected, result = _both_paths(monkeypatch, lambda: rasterizer.rasterize(clip, faces, 32).face_ids.clone())
    assert torch.equal(expected, result)
    assert set(result.unique().tolist()) == {0, 3}  # the collinear and the NaN triangle cover nothing


@pytest.fixture(scope="module")
def torus_renderer():
    import trimesh

    from hy3dpaint.uv import mesh_uv_wrap

    mesh = mesh_uv_wrap(trimesh.creation.torus(major_radius=1.0, minor_radius=0.4, major_sections=32,
                                               minor_sections=16), texture_size=256)
    return MeshRenderer.from_trimesh(mesh, texture_size=256, render_size=192)


def test_bake_loops_give_the_torch_bits(monkeypatch, torus_renderer):
    views = [View(0.0, 0.0, 1.0), View(0.0, 90.0, 0.5), View(60.0, 200.0, 0.25)]
    generator = np.random.default_rng(0)
    images = {"albedo": [generator.integers(0, 256, (192, 192, 3), dtype=np.uint8) for _ in views],
              "mr": [generator.random((192, 192, 2)).astype(np.float32) for _ in views]}

    def run():
        sampling = view_sampling(torus_renderer, views[2], 192)
        baked = bake_materials(torus_renderer, images, views)
        return sampling, baked

    (want_sampling, want), (got_sampling, got) = _both_paths(monkeypatch, run)
    for field in ("texels", "corners", "wx", "wy", "cos"):
        assert torch.equal(getattr(want_sampling, field), getattr(got_sampling, field)), field
    assert want_sampling.texels.numel() > 1000
    for name in images:
        np.testing.assert_array_equal(got[name][0], want[name][0])
        np.testing.assert_array_equal(got[name][1], want[name][1])


def test_compiling_the_loops_up_front_covers_what_a_bake_calls(torus_renderer):
    from hy3dpaint import bake_kernels
    from hy3dpaint.bake import bake_and_inpaint, compile_cpu_loops
    from hy3dpaint.render import cpu_kernels, to_uint8_image

    kernels = [cpu_kernels.depth_keys, cpu_kernels.covered_barycentrics, cpu_kernels.interpolate,
               bake_kernels.seen_texels, bake_kernels.accumulate]
    assert compile_cpu_loops() >= 0
    compiled = [len(kernel.signatures) for kernel in kernels]
    assert min(compiled) >= 1
    views = [View(0.0, 0.0, 1.0), View(30.0, 90.0, 0.5)]
    images = {"albedo": [to_uint8_image(torus_renderer.render_position(v.elevation, v.azimuth)) for v in views],
              "mr": [to_uint8_image(torus_renderer.render_normal(v.elevation, v.azimuth)) for v in views]}
    bake_and_inpaint(torus_renderer, images, views, torus_renderer.pos_idx.numpy())
    assert [len(kernel.signatures) for kernel in kernels] == compiled  # nothing left to compile in a request
