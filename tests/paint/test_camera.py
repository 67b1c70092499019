"""Camera model parity with the reference (FACTS §3; vectors ``cameras.npz``)."""

from pathlib import Path

import numpy as np
import pytest

from hy3dpaint.render.camera import CAMERA_DISTANCE, ORTHO_SCALE, orthographic_projection, view_matrix
from hy3dpaint.view_selection import candidate_views

DATA = Path(__file__).resolve().parent.parent / "data" / "paint"


@pytest.fixture(scope="module")
def cameras():
    return np.load(DATA / "cameras.npz")


def test_candidate_views_match_the_reference_list(cameras):
    views = candidate_views()
    np.testing.assert_array_equal([v.elevation for v in views], cameras["candidate_elevs"])
    np.testing.assert_array_equal([v.azimuth for v in views], cameras["candidate_azims"])
    np.testing.assert_allclose([v.weight for v in views], cameras["candidate_weights"], rtol=0, atol=1e-12)


def test_view_matrices_match_all_30_candidates_including_the_poles(cameras):
    matrices = np.stack(
        [view_matrix(e, a, float(cameras["camera_distance"])) for e, a in zip(cameras["candidate_elevs"], cameras["candidate_azims"])]
    )
    assert matrices.dtype == np.float32
    np.testing.assert_allclose(matrices, cameras["mv_matrices"], rtol=0, atol=1e-6)
    # The +-90 degree views keep the azimuth-dependent roll of the reference (cos(90 deg) ~ 6e-17).
    np.testing.assert_allclose(matrices[4][:3, :3], [[-1, 0, 0], [0, 1, 0], [0, 0, -1]], atol=1e-6)
    np.testing.assert_allclose(matrices[5][:3, :3], [[1, 0, 0], [0, 1, 0], [0, 0, 1]], atol=1e-6)


def test_default_camera_constants_match_the_reference(cameras):
    assert CAMERA_DISTANCE == pytest.approx(float(cameras["camera_distance"]))
    assert ORTHO_SCALE == pytest.approx(float(cameras["ortho_scale"]))


def test_orthographic_projection_matches(cameras):
    np.testing.assert_allclose(orthographic_projection(), cameras["ortho_projection"], rtol=0, atol=1e-6)


def test_front_camera_looks_from_plus_z_of_the_input_frame():
    # Renderer frame r = (-x, z, -y): the input +Z (front) is renderer +Y; the front camera sits there.
    matrix = view_matrix(0.0, 0.0).astype(np.float64)
    camera_position = -matrix[:3, :3].T @ matrix[:3, 3]
    np.testing.assert_allclose(camera_position, [0.0, CAMERA_DISTANCE, 0.0], atol=1e-6)
