"""Promises of the mesh clean-up chain (``hy3dshape.postprocessors``) and of the face reduction it ends with
(``hy3dcore.mesh.FaceReducer``, shared with the texture stage, re-exported under upstream's names)."""

from __future__ import annotations

import logging
import sys
import tempfile

import numpy as np
import pytest
import trimesh

import hy3dshape
from hy3dcore import mesh as core_mesh
from hy3dcore.mesh import FACE_COUNT_TOLERANCE, FaceReducer, reduce_faces, remove_back_to_back_faces
from hy3dshape import postprocessors
from hy3dshape.postprocessors import (
    DegenerateFaceRemover,
    FloaterRemover,
    degenerate_face_mask,
    postprocess_mesh,
)
from hy3dshape.surface_extractors import MCSurfaceExtractor

RESOLUTION = 64


def marching_cubes_mesh(field: np.ndarray) -> trimesh.Trimesh:
    """The neural path's surface extraction of a positive-inside field, as a trimesh."""
    ((vertices, faces),) = MCSurfaceExtractor()(field.astype(np.float32))
    return trimesh.Trimesh(vertices, faces, process=False)


def world_grid(resolution: int = RESOLUTION) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    axis = np.linspace(-1.01, 1.01, resolution + 1, dtype=np.float32)
    return np.meshgrid(axis, axis, axis, indexing="ij")


def sphere_distance(points: np.ndarray) -> np.ndarray:
    """Signed distance to the sphere of radius 0.8 (positive inside)."""
    return 0.8 - np.linalg.norm(points, axis=-1)


def torus_distance(points: np.ndarray) -> np.ndarray:
    """Signed distance to the torus of radii 0.6 and 0.25 around +Y (positive inside)."""
    ring = np.sqrt(points[..., 0] ** 2 + points[..., 2] ** 2) - 0.6
    return 0.25 - np.sqrt(ring**2 + points[..., 1] ** 2)


SHAPES = {"sphere": sphere_distance, "torus": torus_distance}


def analytic_mesh(name: str) -> trimesh.Trimesh:
    x, y, z = world_grid()
    return marching_cubes_mesh(SHAPES[name](np.stack([x, y, z], axis=-1)))


def max_distance_to_analytic_surface(mesh: trimesh.Trimesh, name: str) -> float:
    """Largest distance of the mesh's vertices and surface samples to the analytic surface, after
    undoing the extractor's ``R / (R + 1)`` shrink towards the ``-box_v`` corner."""
    points, _ = trimesh.sample.sample_surface(mesh, 20_000, seed=1)
    points = (np.vstack([points, mesh.vertices]) + 1.01) * (RESOLUTION + 1) / RESOLUTION - 1.01
    return float(np.abs(SHAPES[name](points)).max())


@pytest.fixture(scope="module")
def sphere() -> trimesh.Trimesh:
    return analytic_mesh("sphere")


@pytest.fixture(scope="module")
def torus() -> trimesh.Trimesh:
    return analytic_mesh("torus")


def fan(face_count: int, centre: tuple[float, float, float]) -> trimesh.Trimesh:
    """An open disk of exactly ``face_count`` triangles around a centre vertex."""
    angles = np.linspace(0.0, 2 * np.pi, face_count, endpoint=False)
    rim = np.stack([0.05 * np.cos(angles), 0.05 * np.sin(angles), np.zeros_like(angles)], axis=1)
    vertices = np.vstack([[0.0, 0.0, 0.0], rim]) + np.asarray(centre)
    ring = np.arange(1, face_count + 1)
    faces = np.stack([np.zeros(face_count, dtype=int), ring, np.roll(ring, -1)], axis=1)
    return trimesh.Trimesh(vertices, faces, process=False)


def with_floaters(body: trimesh.Trimesh, sizes: list[int]) -> trimesh.Trimesh:
    parts = [body] + [fan(size, (1.5 + index, 0.0, 0.0)) for index, size in enumerate(sizes)]
    return trimesh.util.concatenate(parts)


# ---------------------------------------------------------------------------------------------------
# Package surface
# ---------------------------------------------------------------------------------------------------


def test_upstream_names_are_exported_at_the_package_top_level():
    assert hy3dshape.FloaterRemover is FloaterRemover
    assert hy3dshape.DegenerateFaceRemover is DegenerateFaceRemover
    assert hy3dshape.FaceReducer is FaceReducer is postprocessors.FaceReducer
    assert hy3dshape.postprocess_mesh is postprocess_mesh


def test_face_reduction_has_one_home_shared_with_the_texture_stage():
    assert FaceReducer.__module__ == core_mesh.__name__


# ---------------------------------------------------------------------------------------------------
# FloaterRemover
# ---------------------------------------------------------------------------------------------------


def test_floater_remover_drops_components_under_half_a_percent_of_the_largest():
    body = trimesh.creation.icosphere(subdivisions=5)  # 20480 faces: threshold floor(102.4) = 102
    mesh = with_floaters(body, [101, 102, 20])
    cleaned = FloaterRemover()(mesh)
    assert len(cleaned.faces) == len(body.faces) + 102
    assert len(cleaned.split(only_watertight=False)) == 2
    assert len(cleaned.vertices) == len(body.vertices) + 103  # no unreferenced vertex left


def test_floater_remover_selects_the_same_faces_as_upstreams_pymeshlab_filter():
    pymeshlab = pytest.importorskip("pymeshlab")
    body = trimesh.creation.icosphere(subdivisions=5)
    mesh = with_floaters(body, [101, 102, 60, 400])
    mesh_set = pymeshlab.MeshSet()
    mesh_set.add_mesh(pymeshlab.Mesh(vertex_matrix=mesh.vertices, face_matrix=mesh.faces))
    mesh_set.apply_filter("compute_selection_by_small_disconnected_components_per_face", nbfaceratio=0.005)
    expected = len(mesh.faces) - mesh_set.current_mesh().selected_face_number()
    assert len(FloaterRemover()(mesh).faces) == expected == len(body.faces) + 102 + 400


def test_floater_remover_keeps_the_largest_component_even_with_a_ratio_near_one():
    mesh = with_floaters(trimesh.creation.icosphere(subdivisions=2), [300])
    cleaned = FloaterRemover(min_face_ratio=0.99)(mesh)
    assert len(cleaned.faces) == 320


def test_floater_remover_returns_a_clean_mesh_unchanged(sphere):
    assert FloaterRemover()(sphere) is sphere


def test_floater_remover_rejects_a_ratio_outside_zero_one():
    with pytest.raises(ValueError, match=r"min_face_ratio must be in \[0, 1\)"):
        FloaterRemover(min_face_ratio=1.5)


def test_callables_reject_something_that_is_not_a_trimesh():
    with pytest.raises(TypeError, match="trimesh.Trimesh"):
        FloaterRemover()(np.zeros((3, 3)))


# ---------------------------------------------------------------------------------------------------
# DegenerateFaceRemover
# ---------------------------------------------------------------------------------------------------


def test_degenerate_face_remover_drops_repeated_vertex_and_zero_area_faces_and_unreferenced_vertices():
    vertices = np.array(
        [[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0], [5, 5, 5], [0, 0, 1]], dtype=float
    )  # vertex 4 is unreferenced
    faces = np.array([[0, 1, 2], [0, 1, 1], [0, 1, 3], [0, 2, 5]])  # repeated index, collinear
    cleaned = DegenerateFaceRemover()(trimesh.Trimesh(vertices, faces, process=False))
    assert cleaned.faces.tolist() == [[0, 1, 2], [0, 2, 3]]
    assert cleaned.vertices.tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_degenerate_face_remover_keeps_a_marching_cubes_sphere_with_grid_exact_zeros_watertight():
    resolution = 40
    index = np.arange(resolution + 1, dtype=np.float32) - resolution / 2
    x, y, z = np.meshgrid(index, index, index, indexing="ij")
    field = 150.0 - (x**2 + y**2 + z**2)  # integer values: exactly zero at 120 grid points
    mesh = marching_cubes_mesh(field)
    assert degenerate_face_mask(np.asarray(mesh.vertices), np.asarray(mesh.faces)).sum() > 0
    cleaned = DegenerateFaceRemover()(mesh)
    assert degenerate_face_mask(np.asarray(cleaned.vertices), np.asarray(cleaned.faces)).sum() == 0
    assert cleaned.is_watertight and cleaned.is_winding_consistent
    assert cleaned.volume == pytest.approx(mesh.volume, rel=1e-6)


def test_degenerate_face_remover_returns_a_clean_mesh_unchanged(torus):
    assert DegenerateFaceRemover()(torus) is torus


# ---------------------------------------------------------------------------------------------------
# FaceReducer
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["sphere", "torus"])
@pytest.mark.parametrize("max_facenum", [1000, 6000])
def test_face_reducer_lands_within_five_percent_under_the_budget_and_stays_watertight(
    shape, max_facenum, request
):
    mesh = request.getfixturevalue(shape)
    assert len(mesh.faces) > max_facenum
    reduced = FaceReducer()(mesh, max_facenum)
    assert (1 - FACE_COUNT_TOLERANCE) * max_facenum <= len(reduced.faces) <= max_facenum
    assert reduced.is_watertight and reduced.is_winding_consistent
    assert reduced.euler_number == mesh.euler_number  # same genus: sphere 2, torus 0
    assert reduced.volume == pytest.approx(mesh.volume, rel=0.02)
    # The input is within 0.05 cell of the analytic surface; the output within half a cell (0.016).
    assert max_distance_to_analytic_surface(reduced, shape) < 0.5 * 2.02 / RESOLUTION


def test_face_reducer_with_pymeshlab_lands_in_budget_and_stays_watertight(torus):
    pytest.importorskip("pymeshlab")
    reduced = FaceReducer(method="pymeshlab")(torus, 3000)
    assert (1 - FACE_COUNT_TOLERANCE) * 3000 <= len(reduced.faces) <= 3000
    assert reduced.is_watertight
    assert max_distance_to_analytic_surface(reduced, "torus") < 0.5 * 2.02 / RESOLUTION


def test_face_reducer_returns_a_mesh_under_the_budget_unchanged(torus):
    assert FaceReducer()(torus, len(torus.faces)) is torus


def test_face_reducer_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="allowed: fast_simplification, pymeshlab"):
        FaceReducer(method="vtk")


@pytest.mark.parametrize("max_facenum", [3, 0, -5, 2.5, True, "40000"])
def test_face_reducer_rejects_a_budget_that_is_not_an_integer_of_at_least_four(torus, max_facenum):
    with pytest.raises(ValueError, match="max_facenum must be an integer >= 4"):
        FaceReducer()(torus, max_facenum)


def test_face_reducer_says_what_to_install_when_pymeshlab_is_missing(torus, monkeypatch):
    monkeypatch.setitem(sys.modules, "pymeshlab", None)  # makes ``import pymeshlab`` raise ImportError
    with pytest.raises(ImportError, match="pip install pymeshlab"):
        FaceReducer(method="pymeshlab")(torus, 1000)


@pytest.mark.parametrize("miss", [700, -900])
def test_reduction_corrects_its_target_when_the_decimator_misses(torus, miss):
    vertices, faces = np.asarray(torus.vertices), np.asarray(torus.faces)
    targets: list[int] = []

    def inexact(v, f, target, attempt):  # always ``miss`` faces off the target
        targets.append(target)
        return v, f[: target + miss]

    _, reduced = reduce_faces(vertices, faces, 4000, inexact)
    assert targets == [4000, 4000 - miss]
    assert len(reduced) == 4000


def test_reduction_raises_when_it_cannot_get_under_the_budget(torus):
    def stubborn(v, f, target, attempt):
        return v, f[:1500]

    with pytest.raises(RuntimeError, match=r"could not get .* under max_facenum=1000"):
        reduce_faces(np.asarray(torus.vertices), np.asarray(torus.faces), 1000, stubborn)


def test_reduction_keeps_the_best_result_when_it_cannot_reach_the_range(torus, caplog):
    def coarse(v, f, target, attempt):
        return v, f[:500]

    with caplog.at_level(logging.WARNING, logger="hy3dcore.mesh"):
        _, reduced = reduce_faces(np.asarray(torus.vertices), np.asarray(torus.faces), 1000, coarse)
    assert len(reduced) == 500
    assert "below the 950-1000 range" in caplog.text


def test_back_to_back_face_pairs_left_by_decimation_are_removed():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    apex = len(sphere.vertices)
    a, b = sphere.faces[0][:2]
    flap = np.array([[a, b, apex], [b, a, apex]])  # a zero-thickness fin hanging off edge (a, b)
    faces = remove_back_to_back_faces(np.vstack([sphere.faces, flap]))
    assert np.array_equal(faces, sphere.faces)


# ---------------------------------------------------------------------------------------------------
# The chain
# ---------------------------------------------------------------------------------------------------


def test_postprocess_mesh_runs_the_three_steps_in_order(torus):
    noisy = with_floaters(torus, [40, 12])
    vertices = np.vstack([noisy.vertices, [[9.0, 9.0, 9.0]]])  # plus an unreferenced vertex
    noisy = trimesh.Trimesh(vertices, noisy.faces, process=False)
    result = postprocess_mesh(noisy, 5000)
    assert len(result.split(only_watertight=False)) == 1
    assert 0.95 * 5000 <= len(result.faces) <= 5000
    assert result.is_watertight
    assert result.vertices.max() < 1.01


def test_postprocess_mesh_logs_its_face_counts(torus, caplog):
    with caplog.at_level(logging.INFO, logger="hy3dshape.postprocessors"):
        postprocess_mesh(torus, 2000)
    assert f"post-processing: {len(torus.faces)} -> " in caplog.text


@pytest.mark.parametrize("method", ["fast_simplification", "pymeshlab"])
def test_the_chain_writes_no_temporary_files(torus, monkeypatch, method):
    if method == "pymeshlab":
        pytest.importorskip("pymeshlab")

    def forbidden(*args, **kwargs):
        raise AssertionError("a temporary file was created")

    for name in ("NamedTemporaryFile", "TemporaryFile", "mkstemp", "mkdtemp", "TemporaryDirectory"):
        monkeypatch.setattr(tempfile, name, forbidden)
    noisy = with_floaters(torus, [30])
    assert len(postprocess_mesh(noisy, 3000, reduction_method=method).faces) <= 3000
