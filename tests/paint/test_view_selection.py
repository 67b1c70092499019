"""View selection parity (FACTS §4; vectors ``view_selection.npz``)."""

from pathlib import Path

import numpy as np
import pytest

from hy3dpaint.bake import BOUNDARY_KERNEL
from hy3dpaint.render import MeshRenderer
from hy3dpaint.view_selection import (
    ALWAYS_SELECTED,
    candidate_views,
    face_areas,
    greedy_selection,
    select_views,
    visible_face_sets,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "paint"


@pytest.fixture(scope="module")
def vectors():
    return np.load(DATA / "view_selection.npz")


@pytest.fixture(scope="module")
def renderer():
    mesh = np.load(DATA / "mesh" / "uv_wrapped.npz")
    return MeshRenderer(mesh["vertices"], mesh["faces"], mesh["uv"], texture_size=128, render_size=128)


def _assert_reference_views(views, vectors):
    assert [v.elevation for v in views] == vectors["selected_elevs"].tolist()
    assert [v.azimuth for v in views] == vectors["selected_azims"].tolist()
    assert [v.weight for v in views] == pytest.approx(vectors["selected_weights"].tolist(), abs=1e-12)


def test_greedy_rule_selects_exactly_the_reference_views_from_the_reference_visibility(vectors):
    chosen = greedy_selection(
        vectors["visible_face_ids_1024"], vectors["face_areas_from_one"], int(vectors["max_selected_view_num"])
    )
    _assert_reference_views([candidate_views()[index] for index in chosen], vectors)


def test_visible_face_sets_match_for_the_principal_candidates(renderer, vectors):
    # The full 30-view check runs in the slow test below; these six cover the +-90 degree views.
    np.testing.assert_array_equal(visible_face_sets(renderer, candidate_views()[:6]), vectors["visible_face_ids_1024"][:6])


@pytest.mark.slow
def test_selection_from_our_renders_matches_the_reference(renderer, vectors):
    visible = visible_face_sets(renderer, candidate_views())
    np.testing.assert_array_equal(visible, vectors["visible_face_ids_1024"])
    chosen = greedy_selection(visible, face_areas(renderer), int(vectors["max_selected_view_num"]))
    _assert_reference_views([candidate_views()[index] for index in chosen], vectors)


def test_face_areas_of_the_normalised_mesh_match(renderer, vectors):
    np.testing.assert_allclose(face_areas(renderer), vectors["face_areas_from_one"], rtol=1e-5, atol=1e-9)


def test_bake_boundary_kernel_is_the_one_selection_leaves_behind(vectors):
    assert BOUNDARY_KERNEL == int(vectors["bake_unreliable_kernel_size_after"])


def test_the_first_six_views_are_always_selected(renderer):
    views = select_views(renderer, 1)
    assert [(v.elevation, v.azimuth) for v in views] == [(v.elevation, v.azimuth) for v in candidate_views()[:ALWAYS_SELECTED]]


def test_max_num_view_must_be_positive(renderer, vectors):
    with pytest.raises(ValueError, match="max_num_view"):
        select_views(renderer, 0)
    with pytest.raises(ValueError, match="max_num_view"):
        greedy_selection(vectors["visible_face_ids_1024"], vectors["face_areas_from_one"], 0)
