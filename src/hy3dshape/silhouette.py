"""The built-in shape engine ``builtin-silhouette``: inflate the object mask into a closed volume.

No weights, CPU only, deterministic. Steps, in the world frame of the neural model (+X to the
image's right, +Y up, the camera of the input view on +Z):

1. object mask = alpha, recentred on a square canvas with border ratio 0.15 exactly like the
   neural preprocessing (``hy3dshape.preprocessors.recenter``);
2. the canvas is laid over the x/y plane of the grid ``linspace(-box_v, box_v, R + 1)`` and the
   mask is sampled at the grid points;
3. the mask is inflated: inside it, the squared half-thickness is ``q = 4 * HALF_THICKNESS_RATIO**2
   * u`` with ``u`` the solution of the Poisson equation ``-laplacian(u) = 1`` (``u = 0`` outside),
   so a disk becomes an ellipsoid and a bar an elliptic tube, round at the rim, thickest in the
   middle and without creases; outside, ``q`` is negative and grows with the Euclidean distance
   to the mask. The field ``q(x, y) - z**2`` (grid cells squared) is positive inside. The
   distance-transform profile ``sqrt(d * d_max)`` was tried first: it gives a cone with a crease
   along the medial axis and flat-sided thin parts;
4. ``MCSurfaceExtractor`` (the neural path's marching cubes, world mapping and face flip) turns
   the field into a mesh.

Memory: the field only covers the object's bounding box plus a margin (``CROP_MARGIN_CELLS``),
in float32, and is built in one pass from the 2-D ``q`` (no 3-D temporaries); the crop's outer
faces are set below the level so the surface is always closed. Worst case at R = 512 (a disk
filling the canvas): a 439 x 439 x 267 crop, 196 MiB, 265 MiB peak traced allocations, about 6 s
on one CPU core, instead of 515 MiB for one float32 513^3 grid (see ``docs/mesh.md``).
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import trimesh
from PIL import Image
from scipy.ndimage import distance_transform_edt

from .surface_extractors import MCSurfaceExtractor

logger = logging.getLogger(__name__)

#: Engine name reported in logs and in the ``ENGINE`` output.
ENGINE_NAME = "builtin-silhouette"
#: Progress phase reported per image (the name the neural pipeline uses for volume decoding).
DECODE_PHASE = "shape:decode"
#: Border ratio of the recentred canvas (the neural preprocessing's).
BORDER_RATIO = 0.15
#: Half-depth of an inflated disk as a fraction of its radius (thinner parts are inflated alike).
HALF_THICKNESS_RATIO = 0.6
#: Mask samples at or above this value (alpha / 255) are inside the object.
MASK_THRESHOLD = 0.5
#: Smallest distance of a field sample from ``mc_level`` (grid cells squared): no vertex lands on a grid point.
MIN_LEVEL_GAP = np.float32(0.05)
#: Cells of field kept around the object on every side of the crop.
CROP_MARGIN_CELLS = 2
#: Accepted ``octree_resolution`` (the contract's range; memory is documented for the maximum).
MIN_OCTREE_RESOLUTION = 16
MAX_OCTREE_RESOLUTION = 512
DEFAULT_OCTREE_RESOLUTION = 256
DEFAULT_BOX_V = 1.01
OUTPUT_TYPES = ("trimesh", "mesh")

ImageInput = Image.Image | np.ndarray


def object_mask(image: ImageInput, border_ratio: float = BORDER_RATIO) -> np.ndarray:
    """The recentred object mask of an RGBA image: float32 ``[S, S]`` in [0, 1], ``S = max(H, W)``.

    ``image`` is a PIL image or a uint8 ``[H, W, 3|4]`` array; without alpha the whole image is the
    object (as the neural preprocessing). Raises ``ValueError`` when the alpha is empty.
    """
    from .preprocessors import recenter

    rgba = _as_rgba(image)
    if not rgba[..., 3].any():
        raise ValueError(
            f"{ENGINE_NAME}: the image's alpha channel (the object mask) is empty; "
            "give an RGBA image whose alpha marks the object, or remove the background first"
        )
    _rgb, mask = recenter(rgba, border_ratio)
    return mask[..., 0].astype(np.float32) / 255.0


def mask_on_grid(mask: np.ndarray, octree_resolution: int) -> np.ndarray:
    """Sample a square canvas mask at the ``(R + 1) x (R + 1)`` grid points of the x/y plane.

    The canvas spans the grid's extent: grid point ``i`` sits at canvas position ``i / R * S``
    (pixel edges at integers), sampled bilinearly after an area low-pass. Returns float32
    ``[R + 1, R + 1]`` in [0, 1] indexed ``[x, y]``: image columns go to +X, image rows upwards to
    +Y. Points on the grid's border are set to 0 (outside).
    """
    resolution = int(octree_resolution)
    canvas = np.asarray(mask, dtype=np.float32)
    if canvas.shape[0] > resolution:  # low-pass first so that sampling does not alias
        canvas = cv2.resize(canvas, (resolution, resolution), interpolation=cv2.INTER_AREA)
    side = canvas.shape[0]
    centres = (np.arange(resolution + 1, dtype=np.float32) * (side / resolution) - 0.5).astype(np.float32)
    map_x = np.broadcast_to(centres[None, :], (resolution + 1, resolution + 1))
    map_y = np.broadcast_to(centres[:, None], (resolution + 1, resolution + 1))
    sampled = cv2.remap(
        canvas, np.ascontiguousarray(map_x), np.ascontiguousarray(map_y), cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    coverage = np.ascontiguousarray(sampled[::-1, :].T.clip(0.0, 1.0))
    coverage[[0, -1], :] = 0.0
    coverage[:, [0, -1]] = 0.0
    return coverage


def squared_half_thickness(coverage: np.ndarray) -> np.ndarray:
    """Signed squared half-thickness ``q`` in grid cells squared, float32 ``[R + 1, R + 1]``.

    ``coverage`` is the mask sampled on the grid (``mask_on_grid``); samples at or above
    ``MASK_THRESHOLD`` are inside. Inside, ``q = 4 * HALF_THICKNESS_RATIO**2 * u`` where ``u`` solves
    the Poisson equation ``-laplacian(u) = 1`` with ``u = 0`` outside (5-point stencil, sparse direct
    solve): a disk becomes an ellipsoid whose half-depth is ``HALF_THICKNESS_RATIO`` times its
    radius, a bar an elliptic tube, with no crease along the medial axis. Outside, ``q`` is minus the
    value of the nearest inside sample times the distance to it. On the two rings of samples along
    the edge, ``q`` is rescaled by ``2 * (coverage - MASK_THRESHOLD)`` so that its zero crossing
    follows the mask's sub-sample edge instead of a staircase. Raises ``ValueError`` when no sample
    is inside.
    """
    inside = coverage >= MASK_THRESHOLD
    count = int(inside.sum())
    if count == 0:
        raise ValueError(
            f"{ENGINE_NAME}: the object is too thin to cover any grid sample; raise octree_resolution"
        )
    squared = np.zeros(inside.shape, dtype=np.float64)
    squared[inside] = 4.0 * HALF_THICKNESS_RATIO**2 * _poisson_potential(inside)
    outside = ~inside
    distance, (nearest_x, nearest_y) = distance_transform_edt(outside, return_indices=True)
    scale = squared[nearest_x, nearest_y]  # the nearest inside sample's value (itself when inside)
    squared[outside] = -scale[outside] * distance[outside]
    edge = _edge_samples(inside)
    squared[edge] = scale[edge] * 2.0 * (coverage[edge] - MASK_THRESHOLD)
    return squared.astype(np.float32)


def _poisson_potential(inside: np.ndarray) -> np.ndarray:
    """Solution of ``-laplacian(u) = 1`` at the inside samples (in ``np.nonzero`` order), ``u = 0``
    outside. The grid's border samples must be outside."""
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import spsolve

    count = int(inside.sum())
    number = np.full(inside.shape, -1, dtype=np.int64)
    number[inside] = np.arange(count)
    xs, ys = np.nonzero(inside)
    rows, cols, values = [np.arange(count)], [np.arange(count)], [np.full(count, 4.0)]
    for step_x, step_y in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        neighbour = number[xs + step_x, ys + step_y]  # in range: the border is outside
        linked = neighbour >= 0
        rows.append(np.nonzero(linked)[0])
        cols.append(neighbour[linked])
        values.append(np.full(int(linked.sum()), -1.0))
    laplacian = csc_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(count, count)
    )
    return spsolve(laplacian, np.ones(count))


def _edge_samples(inside: np.ndarray) -> np.ndarray:
    """Samples with a 4-neighbour on the other side of the mask's edge (both rings)."""
    edge = np.zeros_like(inside)
    for axis in (0, 1):
        differs = inside != np.roll(inside, 1, axis=axis)  # the border is outside: no wrap-around edge
        edge |= differs | np.roll(differs, -1, axis=axis)
    return edge


def inflate(squared: np.ndarray, mc_level: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The positive-inside field ``q(x, y) - z**2`` over the object's bounding box.

    ``squared`` is the ``[R + 1, R + 1]`` signed squared half-thickness ``q`` (grid cells squared);
    ``z`` is measured in cells from the grid's middle plane. The field is smooth (quadratic in z,
    close to linear across the edge), which marching cubes interpolates well. Returns
    ``(field float32 [nx, ny, nz], offset int64 [3])``: the crop and the grid index of its first
    sample. The crop's outer faces are set below ``mc_level`` so the surface is always closed, and
    every sample is at least ``MIN_LEVEL_GAP`` from ``mc_level`` (no coincident vertices). Raises ``ValueError`` when no
    sample is above ``mc_level``.
    """
    resolution = squared.shape[0] - 1
    level = np.float32(mc_level)
    xs, ys = np.nonzero(squared > level)
    if xs.size == 0:
        raise ValueError(f"{ENGINE_NAME}: no sample of the field is above mc_level={mc_level}")
    half_depth = math.sqrt(float(squared.max() - level))
    centre = resolution / 2.0
    x_low, x_high = max(int(xs.min()) - CROP_MARGIN_CELLS, 0), min(int(xs.max()) + CROP_MARGIN_CELLS, resolution)
    y_low, y_high = max(int(ys.min()) - CROP_MARGIN_CELLS, 0), min(int(ys.max()) + CROP_MARGIN_CELLS, resolution)
    z_low = max(math.floor(centre - half_depth) - CROP_MARGIN_CELLS, 0)
    z_high = min(math.ceil(centre + half_depth) + CROP_MARGIN_CELLS, resolution)

    depth_sq = ((np.arange(z_low, z_high + 1, dtype=np.float64) - centre) ** 2).astype(np.float32)
    crop = _keep_off_level(squared[x_low : x_high + 1, y_low : y_high + 1], np.unique(depth_sq) + level)
    field = np.empty(crop.shape + depth_sq.shape, dtype=np.float32)
    np.subtract(crop[:, :, None], depth_sq[None, None, :], out=field)
    below = level - np.float32(1.0)
    field[[0, -1], :, :] = below
    field[:, [0, -1], :] = below
    field[:, :, [0, -1]] = below
    return field, np.array([x_low, y_low, z_low], dtype=np.int64)


def _keep_off_level(squared: np.ndarray, crossings: np.ndarray) -> np.ndarray:
    """Move ``q`` values closer than ``MIN_LEVEL_GAP`` to a value of ``crossings`` (the sorted
    distinct ``z**2 + level``, at least 0.25 apart) to exactly ``MIN_LEVEL_GAP`` from it.

    A field sample at (or within rounding of) the level puts marching-cubes vertices of several
    edges at the same float32 position; trimesh would merge them into a non-manifold vertex.
    Working on the 2-D ``q`` keeps every sample of ``q - z**2`` at least the gap from the level.
    """
    nearest = np.searchsorted(crossings, squared).clip(1, len(crossings) - 1)
    below, above = crossings[nearest - 1], crossings[nearest]
    target = np.where(squared - below < above - squared, below, above)
    offset = squared - target
    close = np.abs(offset) < MIN_LEVEL_GAP
    if not close.any():
        return squared
    moved = squared.copy()
    moved[close] = target[close] + np.where(offset[close] > 0, MIN_LEVEL_GAP, -MIN_LEVEL_GAP).astype(np.float32)
    return moved


class SilhouetteLiftingPipeline:
    """Built-in shape engine (no weights, CPU, deterministic): ``pipe(image=...)`` -> list of meshes.

    Call signature mirrors ``Hunyuan3DDiTFlowMatchingPipeline``: ``image`` is a PIL RGBA image (alpha
    = object mask) or a list of them; the result has one item per image: a ``trimesh.Trimesh``
    (``output_type="trimesh"``), a ``(vertices float32 [V, 3], faces int64 [F, 3])`` pair
    (``output_type="mesh"``), or ``None`` when marching cubes found no surface (as upstream).
    The mesh is closed, faces outwards and lies inside ``[-box_v, box_v]^3``.
    """

    engine_name = ENGINE_NAME

    def __init__(self, border_ratio: float = BORDER_RATIO):
        if not 0.0 <= border_ratio < 1.0:
            raise ValueError(f"border_ratio must be in [0, 1), got {border_ratio!r}")
        self.border_ratio = border_ratio
        self.surface_extractor = MCSurfaceExtractor()

    def __call__(
        self,
        image: ImageInput | Sequence[ImageInput],
        octree_resolution: int = DEFAULT_OCTREE_RESOLUTION,
        box_v: float = DEFAULT_BOX_V,
        mc_level: float = 0.0,
        output_type: str = "trimesh",
        callback: Callable[[str, int, int], None] | None = None,
        **ignored: object,
    ) -> list:
        """Lift each image's silhouette to a closed mesh (see the class docstring).

        ``mc_level`` is the iso-level of the field ``q - z**2`` in grid cells squared (0, the default,
        is the inflated silhouette; a positive level shrinks the shape). Raises ``ValueError`` for an
        empty mask, an ``octree_resolution`` outside
        ``[MIN_OCTREE_RESOLUTION, MAX_OCTREE_RESOLUTION]``, a non-positive ``box_v``, a non-finite
        ``mc_level`` or an unknown ``output_type``. Keywords of the neural pipeline that do not apply
        here (``num_inference_steps``, ``guidance_scale``, ``generator``...) are accepted and ignored.
        ``callback(phase, done, total)``: this engine has no denoising, so it reports only
        ``"shape:decode"``, once per image after its mesh is built (``done`` images of ``total``); an
        exception raised by the callback propagates.
        """
        octree_resolution = _check_resolution(octree_resolution)
        if not (_is_number(box_v) and math.isfinite(box_v) and box_v > 0):
            raise ValueError(f"box_v must be a positive number, got {box_v!r}")
        if not (_is_number(mc_level) and math.isfinite(mc_level)):
            raise ValueError(f"mc_level must be a finite number, got {mc_level!r}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"unknown output_type {output_type!r}; allowed: {', '.join(OUTPUT_TYPES)}")
        if ignored:
            logger.debug("%s ignores %s", ENGINE_NAME, ", ".join(sorted(ignored)))
        images = list(image) if isinstance(image, (list, tuple)) else [image]
        if not images:
            raise ValueError(f"{ENGINE_NAME}: got an empty list of images")
        results = []
        for done, item in enumerate(images, start=1):
            results.append(self._lift(item, octree_resolution, float(box_v), float(mc_level), output_type))
            if callback is not None:
                callback(DECODE_PHASE, done, len(images))
        return results

    def _lift(self, image: ImageInput, octree_resolution: int, box_v: float, mc_level: float, output_type: str):
        start = time.perf_counter()
        squared = squared_half_thickness(mask_on_grid(object_mask(image, self.border_ratio), octree_resolution))
        try:
            field, offset = inflate(squared, mc_level)
        except ValueError as error:
            logger.warning("%s: %s", ENGINE_NAME, error)
            return None
        (surface,) = self.surface_extractor(field, mc_level, box_v, octree_resolution)
        if surface is None:
            return None
        vertices, faces = surface
        # The extractor maps crop indices to world; shift by the crop's offset (same linear map).
        vertices = (vertices.astype(np.float64) + offset * (2.0 * box_v / (octree_resolution + 1))).astype(np.float32)
        logger.info(
            "%s: %d vertices, %d faces at octree_resolution %d (field %s) in %.2f s",
            ENGINE_NAME, len(vertices), len(faces), octree_resolution, "x".join(map(str, field.shape)),
            time.perf_counter() - start,
        )
        if output_type == "mesh":
            return vertices, faces
        return trimesh.Trimesh(vertices, faces)


def _as_rgba(image: ImageInput) -> np.ndarray:
    if isinstance(image, Image.Image):
        if "A" not in image.getbands():
            logger.warning("%s: the image has no alpha channel; the whole image is taken as the object", ENGINE_NAME)
        return np.asarray(image.convert("RGBA"))
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] in (3, 4):
        if image.shape[2] == 3:
            logger.warning("%s: the image has no alpha channel; the whole image is taken as the object", ENGINE_NAME)
            return np.concatenate([image, np.full(image.shape[:2] + (1,), 255, dtype=np.uint8)], axis=2)
        return image
    raise TypeError(
        f"{ENGINE_NAME}: image must be a PIL image or a uint8 [H, W, 3|4] array, got "
        f"{type(image).__name__}{getattr(image, 'shape', '')}"
    )


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_resolution(octree_resolution: int) -> int:
    if isinstance(octree_resolution, bool) or not isinstance(octree_resolution, (int, np.integer)):
        raise ValueError(f"octree_resolution must be an integer, got {octree_resolution!r}")
    if not MIN_OCTREE_RESOLUTION <= octree_resolution <= MAX_OCTREE_RESOLUTION:
        raise ValueError(
            f"octree_resolution must be in [{MIN_OCTREE_RESOLUTION}, {MAX_OCTREE_RESOLUTION}], got {octree_resolution}"
        )
    return int(octree_resolution)
