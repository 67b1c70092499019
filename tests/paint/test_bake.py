"""Back-projection and merge parity (FACTS §9; vectors ``bake/``).

The reference baked stand-in views: albedo = the uint8 position maps, MR = the uint8 normal maps.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hy3dpaint.bake import ViewProjection, back_project, bake_views, merge_views, texels_to_image
from hy3dpaint.render import MeshRenderer
from hy3dpaint.view_selection import View

DATA = Path(__file__).resolve().parent.parent / "data" / "paint"
META = json.loads((DATA / "meta.json").read_text())
SELECTED = META["geometry"]["selected"]
VIEWS = [View(float(e), float(a), float(w)) for e, a, w in zip(SELECTED["elevs"], SELECTED["azims"], SELECTED["weights"])]


@pytest.fixture(scope="module")
def renderer():
    mesh = np.load(DATA / "mesh" / "uv_wrapped.npz")
    size = META["config"]["texture_size"]
    return MeshRenderer(mesh["vertices"], mesh["faces"], mesh["uv"], texture_size=size, render_size=META["config"]["render_size"])


@pytest.fixture(scope="module")
def renders():
    return np.load(DATA / "render" / "renders.npz")


@pytest.fixture(scope="module")
def bake_vectors():
    return np.load(DATA / "bake" / "bake.npz")


@pytest.mark.parametrize("view", range(3))
def test_per_view_back_projection_matches(renderer, renders, view):
    expected = np.load(DATA / "bake" / "back_project_albedo_per_view.npz")
    projection = back_project(renderer, renders["position_uint8"][view], VIEWS[view])
    texture = texels_to_image(renderer, projection.colors).numpy()
    cos = texels_to_image(renderer, projection.cos).numpy()
    reference_cos = expected[f"cos_{view}"][..., 0]
    both = (cos > 0) & (reference_cos > 0)
    assert ((cos > 0) == (reference_cos > 0)).mean() >= 0.995
    np.testing.assert_allclose(cos[both], reference_cos[both], rtol=0, atol=1e-5)
    np.testing.assert_allclose(texture[both], expected[f"texture_{view}"][both], rtol=0, atol=1e-5)
    # The reference's boundary map is all zero in back_sample mode.
    assert not expected[f"boundary_{view}"].any()


@pytest.mark.parametrize(("material", "images"), [("albedo", "position_uint8"), ("mr", "normal_uint8")])
def test_merged_bake_matches(renderer, renders, bake_vectors, material, images):
    texture, mask = bake_views(renderer, list(renders[images]), VIEWS)
    assert texture.dtype == np.float32 and mask.dtype == np.uint8
    reference_mask = bake_vectors[f"mask_{material}"]
    assert set(np.unique(mask).tolist()) <= {0, 255}
    assert (mask == reference_mask).mean() >= 0.995
    both = (mask > 0) & (reference_mask > 0)
    np.testing.assert_allclose(texture[both], bake_vectors[f"texture_{material}"][both], rtol=0, atol=1e-5)


def test_position_colored_views_bake_back_to_each_texels_own_position_color(renderer, renders):
    # Texel t at renderer position r' must receive 0.5 - r' / 1.15 (the position map's colour) up to
    # 8-bit quantisation and bilinear sampling across neighbouring pixels.
    texture, mask = bake_views(renderer, list(renders["position_uint8"]), VIEWS)
    texels = renderer.texels
    expected = (0.5 - texels.positions[:, :3] / 1.15).numpy()
    grid = texels.grid.numpy()
    painted = mask[grid[:, 0], grid[:, 1]] > 0
    error = np.abs(texture[grid[painted, 0], grid[painted, 1]] - expected[painted])
    assert painted.sum() > 100
    assert np.median(error) < 0.01


def test_merge_skips_a_view_whose_texels_are_almost_all_painted():
    colors = torch.ones((100, 3))
    first = ViewProjection(colors=colors, cos=torch.ones(100))
    second = ViewProjection(colors=colors * 0.0, cos=torch.ones(100))  # sees only painted texels
    merged, painted = merge_views([first, second], [1.0, 1.0])
    assert torch.equal(merged, colors) and painted.all()
    third = ViewProjection(colors=colors * 0.0, cos=torch.cat([torch.ones(50), torch.zeros(50)]))
    partial = ViewProjection(colors=colors, cos=torch.cat([torch.zeros(50), torch.ones(50)]))
    merged, painted = merge_views([partial, third], [1.0, 3.0])
    assert torch.equal(merged[50:], colors[50:]) and torch.equal(merged[:50], colors[:50] * 0.0)


def test_merge_weights_are_view_weight_times_cos_to_the_fourth():
    # Both views see texel 0; the second also sees texel 1, so only half of its texels are painted.
    bright = ViewProjection(colors=torch.ones((2, 3)), cos=torch.tensor([0.5, 0.0]))
    dark = ViewProjection(colors=torch.zeros((2, 3)), cos=torch.tensor([1.0, 1.0]))
    merged, painted = merge_views([bright, dark], [2.0, 1.0])
    weight = 2.0 * 0.5**4
    assert merged[0, 0].item() == pytest.approx(weight / (weight + 1.0))
    assert merged[1, 0].item() == 0.0 and painted.all()


def test_bake_rejects_mismatched_inputs(renderer, renders):
    with pytest.raises(ValueError, match="one image per view"):
        bake_views(renderer, list(renders["position_uint8"][:2]), VIEWS)
    with pytest.raises(ValueError, match="square"):
        back_project(renderer, np.zeros((16, 32, 3), np.uint8), VIEWS[0])


def test_uint8_images_scale_to_the_same_floats_as_a_float64_division():
    """``image_to_tensor`` scales uint8 in float32 on the device; that equals float32(v / 255.0)."""
    from hy3dpaint.bake import image_to_tensor

    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(image_to_tensor(values, torch.device("cpu"))[..., 0].numpy(),
                                  (values / 255.0).astype(np.float32))
