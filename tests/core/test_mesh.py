"""``hy3dcore.mesh``: the face reduction both stages run (the shape stage's last clean-up step, the texture
stage's remesh), on in-memory arrays. The full promises of the clean-up chain are in
``tests/shape/test_postprocessors.py``."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from hy3dcore.mesh import FACE_COUNT_TOLERANCE, FaceReducer, check_max_facenum, compact, mesh_arrays


def test_a_closed_mesh_lands_just_under_the_budget_and_stays_closed():
    sphere = trimesh.creation.icosphere(subdivisions=4)  # 5120 faces
    reduced = FaceReducer()(sphere, 1000)
    assert (1 - FACE_COUNT_TOLERANCE) * 1000 <= len(reduced.faces) <= 1000
    assert reduced.is_watertight


def test_a_mesh_within_the_budget_is_returned_as_is():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    assert FaceReducer()(sphere, len(sphere.faces)) is sphere


def test_compact_drops_unreferenced_vertices_and_renumbers_faces():
    vertices = np.arange(15, dtype=np.float64).reshape(5, 3)
    faces = np.array([[0, 2, 4]])
    kept, renumbered = compact(vertices, faces)
    assert np.array_equal(kept, vertices[[0, 2, 4]]) and np.array_equal(renumbered, [[0, 1, 2]])


def test_mesh_arrays_refuses_what_is_not_a_trimesh():
    with pytest.raises(TypeError, match="expected a trimesh.Trimesh"):
        mesh_arrays(np.zeros((3, 3)))


@pytest.mark.parametrize("max_facenum", [3, 1.5, True, "100"])
def test_the_budget_must_be_an_integer_of_at_least_four(max_facenum):
    with pytest.raises(ValueError, match="max_facenum must be an integer >= 4"):
        check_max_facenum(max_facenum)
