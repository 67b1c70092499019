"""The built-in texture engine ``builtin-projection``: paints a mesh by projecting the input image.

No weights. ``ProjectionTexturePipeline()(mesh, image=<PIL RGBA>)`` unwraps the mesh
(``mesh_uv_wrap``), renders the front view (elevation 0, azimuth 0: the input image's camera),
aligns the image to the render by fitting the image's alpha bounding box onto the rendered
silhouette's bounding box (so it works with meshes from any shape engine), back-projects it onto
the texels it sees with the same baking code as the neural path, fills the unseen surface with the
same inpainting, and attaches a constant metallic-roughness texture.

The engine is deterministic: ``seed`` is accepted for interface parity and has no effect.
"""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np
import trimesh
from PIL import Image

from hy3dpaint.bake import bake_and_inpaint
from hy3dpaint.export import TEXTURE_FORMATS, export_glb, pbr_mesh
from hy3dpaint.progress import PHASE_RENDER, PHASE_UV, ProgressCallback, report
from hy3dpaint.render.mesh_renderer import MeshRenderer
from hy3dpaint.uv import mesh_uv_wrap
from hy3dpaint.view_selection import View

logger = logging.getLogger(__name__)

#: Engine name reported to the serving layer.
ENGINE_NAME = "builtin-projection"
#: Default texture size (texels per side).
DEFAULT_TEXTURE_SIZE = 1024
#: Smallest and largest accepted texture sizes.
MIN_TEXTURE_SIZE, MAX_TEXTURE_SIZE = 64, 4096
#: Resolution of the front-view render the image is projected from.
PROJECTION_RENDER_SIZE = 1024
#: Alpha above this (0-255) marks the object in the input image.
ALPHA_THRESHOLD = 127
#: Constant material of the painted surface.
METALLIC = 0.0
ROUGHNESS = 0.8
#: The view the input image was taken from.
FRONT_VIEW = View(elevation=0.0, azimuth=0.0, weight=1.0)
OUTPUT_TYPES = ("trimesh", "glb")


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), half-open, of the True pixels, or None if there are none."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if len(rows) == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _extend_colors(rgb: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Give every pixel outside ``inside`` the colour of the nearest inside pixel (no background bleed)."""
    if inside.all():
        return rgb
    _distance, labels = cv2.distanceTransformWithLabels(
        np.where(inside, 0, 255).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5, labelType=cv2.DIST_LABEL_PIXEL
    )
    lookup = np.zeros((int(labels.max()) + 1, rgb.shape[2]), dtype=rgb.dtype)
    lookup[labels[inside]] = rgb[inside]
    return lookup[labels]


def align_image_to_silhouette(image: Image.Image, silhouette: np.ndarray) -> np.ndarray:
    """The object of ``image`` stretched onto the bounding box of ``silhouette`` (bool ``[R, R]``).

    Returns float32 ``[R, R, 3]`` in [0, 1]; pixels outside the object carry the nearest object colour.
    Raises ``ValueError`` when the image has no opaque pixel or the silhouette is empty.
    """
    rgba = np.asarray(image.convert("RGBA"))
    inside = rgba[..., 3] > ALPHA_THRESHOLD
    image_box = _bounding_box(inside)
    if image_box is None:
        raise ValueError(f"image has no pixel with alpha > {ALPHA_THRESHOLD}; nothing to project")
    target_box = _bounding_box(silhouette)
    if target_box is None:
        raise ValueError("the mesh is not visible from the front camera; cannot project the image")
    x0, y0, x1, y1 = image_box
    rgb = _extend_colors(rgba[..., :3], inside)[y0:y1, x0:x1]
    tx0, ty0, tx1, ty1 = target_box
    size = (tx1 - tx0, ty1 - ty0)
    shrinking = size[0] < rgb.shape[1] or size[1] < rgb.shape[0]
    fitted = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    canvas = np.zeros((*silhouette.shape, 3), dtype=np.uint8)
    placed = np.zeros(silhouette.shape, dtype=bool)
    canvas[ty0:ty1, tx0:tx1] = fitted
    placed[ty0:ty1, tx0:tx1] = True
    return _extend_colors(canvas, placed).astype(np.float32) / np.float32(255)


class ProjectionTexturePipeline:
    """Built-in texture engine (no weights): ``pipe(mesh, image=<PIL RGBA>, seed=...)``.

    ``device`` selects where rendering and baking run ("cpu" or a CUDA device).
    """

    engine_name = ENGINE_NAME

    def __init__(self, *, device: str = "cpu", render_size: int = PROJECTION_RENDER_SIZE) -> None:
        self.device = device
        self.render_size = int(render_size)

    def __call__(
        self,
        mesh: trimesh.Trimesh,
        image: Image.Image,
        seed: int | None = None,
        *,
        texture_size: int = DEFAULT_TEXTURE_SIZE,
        output_type: str = "trimesh",
        texture_format: str = "jpeg",
        callback: ProgressCallback | None = None,
    ) -> trimesh.Trimesh | bytes:
        """Paint ``mesh`` (input frame: +Y up, camera on +Z) with ``image``.

        Returns a textured ``trimesh.Trimesh`` (UVs, vertices split along seams, a ``PBRMaterial``
        with baseColor and metallicRoughness textures), or GLB bytes with ``output_type="glb"``.
        ``seed`` is accepted for interface parity; the result does not depend on it.
        ``texture_format`` encodes the GLB's textures (``hy3dpaint.export.export_glb``).
        ``callback(phase, done, total)`` reports ``paint:uv``, ``paint:render`` (the one front view)
        and ``paint:bake``; what it raises propagates.
        Raises ``ValueError`` for a bad mesh, image or setting.
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        if texture_format not in TEXTURE_FORMATS:
            raise ValueError(f"texture_format must be one of {', '.join(TEXTURE_FORMATS)}, got {texture_format!r}")
        if not MIN_TEXTURE_SIZE <= int(texture_size) <= MAX_TEXTURE_SIZE:
            raise ValueError(f"texture_size must be in [{MIN_TEXTURE_SIZE}, {MAX_TEXTURE_SIZE}], got {texture_size}")
        if not isinstance(image, Image.Image):
            raise ValueError(f"image must be a PIL image (RGBA, alpha = object mask), got {type(image).__name__}")
        if isinstance(mesh, trimesh.Scene):
            mesh = mesh.to_geometry()
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
            raise ValueError("mesh must be a non-empty trimesh.Trimesh")
        started = time.perf_counter()
        logger.info("paint engine %s: %d faces, texture %d, seed %s (unused)", ENGINE_NAME, len(mesh.faces), texture_size, seed)
        unwrapped = mesh_uv_wrap(mesh, texture_size=int(texture_size))
        uv = np.asarray(unwrapped.visual.uv, dtype=np.float32)
        report(callback, PHASE_UV, 1, 1)
        renderer = MeshRenderer(
            unwrapped.vertices, unwrapped.faces, uv,
            texture_size=int(texture_size), render_size=self.render_size, device=self.device,
        )
        silhouette = (renderer.render_face_ids(FRONT_VIEW.elevation, FRONT_VIEW.azimuth) > 0).cpu().numpy()
        report(callback, PHASE_RENDER, 1, 1)
        view_image = align_image_to_silhouette(image, silhouette)
        albedo = bake_and_inpaint(renderer, {"albedo": [view_image]}, [FRONT_VIEW], unwrapped.faces,
                                  callback=callback)["albedo"]
        shape = albedo.shape[:2]
        textured = pbr_mesh(
            unwrapped.vertices, unwrapped.faces, uv, albedo,
            metallic=np.full(shape, round(METALLIC * 255), dtype=np.uint8),
            roughness=np.full(shape, round(ROUGHNESS * 255), dtype=np.uint8),
        )
        logger.info("paint engine %s: %.2f s", ENGINE_NAME, time.perf_counter() - started)
        return export_glb(textured, texture_format=texture_format) if output_type == "glb" else textured
