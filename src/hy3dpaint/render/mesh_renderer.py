"""Mesh renderer of the texture stage: the renderer frame, face-id / normal / position renders.

The renderer frame (FACTS §3): an input vertex ``p = (x, y, z)`` (trimesh/glTF frame, +Y up, +Z
front) becomes ``r = (-x, z, -y)`` (a reflection, so triangle winding flips), then is centred on its
bounding-box centre ``c`` and scaled by ``RENDERER_SCALE / (2 D)`` where ``D`` is the largest
vertex distance from ``c``: every vertex lies within radius ``RENDERER_SCALE / 2``. UVs are stored
with ``v_r = 1 - v``.

Images come out upright and not mirrored: row 0 is the top of the object and the object's +X is to
the right in the front view (elevation 0, azimuth 0).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from hy3dpaint.render.camera import CAMERA_DISTANCE, orthographic_projection, view_matrix
from hy3dpaint.render.rasterizer import Rasterization, interpolate_covered, rasterize
from hy3dpaint.render.texels import TexelTable, build_texel_table

#: Normalised size of the mesh in the renderer frame: every vertex is within RENDERER_SCALE / 2 of
#: the origin (the reference's ``scale_factor``).
RENDERER_SCALE = 1.15
#: Default size of view renders (condition maps, bake images), pixels per side.
DEFAULT_RENDER_SIZE = 2048
#: Default texture (UV atlas) size, texels per side.
DEFAULT_TEXTURE_SIZE = 4096
#: Value of background pixels in normal and position maps (before the (n + 1) / 2 mapping for normals).
BACKGROUND_VALUE = 1.0
#: View rasterizations kept per renderer (the neural stage's 6 views: each view is rasterized once
#: for its condition renders and its bake; about 60 MB each at 2048^2).
RASTER_CACHE_VIEWS = 6


@dataclass(frozen=True)
class Normalization:
    """Input frame -> renderer frame: ``r' = (flip(p) - center) * scale``."""

    center: np.ndarray  # [3] float32, in the flipped frame
    scale: float  # RENDERER_SCALE / (2 D)


def to_renderer_axes(vertices: np.ndarray) -> np.ndarray:
    """``(x, y, z) -> (-x, z, -y)``: input (glTF) axes to renderer axes, float32."""
    vertices = np.asarray(vertices, dtype=np.float32)
    return np.stack([-vertices[:, 0], vertices[:, 2], -vertices[:, 1]], axis=1)


def from_renderer_axes(vertices: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_renderer_axes`: ``(a, b, c) -> (-a, -c, b)``."""
    vertices = np.asarray(vertices, dtype=np.float32)
    return np.stack([-vertices[:, 0], -vertices[:, 2], vertices[:, 1]], axis=1)


def normalize_vertices(flipped: torch.Tensor) -> tuple[torch.Tensor, Normalization]:
    """Centre on the bounding-box centre and scale into radius ``RENDERER_SCALE / 2`` (float32 torch)."""
    center = (flipped.amax(dim=0) + flipped.amin(dim=0)) / 2
    diameter = float(torch.linalg.vector_norm(flipped - center, dim=1).amax()) * 2.0
    if not np.isfinite(diameter) or diameter <= 0.0:
        raise ValueError("mesh has no extent (all vertices coincide or are not finite); cannot render it")
    scale = RENDERER_SCALE / diameter
    normalized = (flipped - center) * scale
    return normalized, Normalization(center=center.cpu().numpy(), scale=scale)


class MeshRenderer:
    """Renders one UV-mapped mesh from orbit cameras; holds its renderer-frame copy and texel table.

    ``vertices [V, 3]`` and ``faces [F, 3]`` are in the input frame; ``uv [V', 2]`` (v up) with
    ``uv_faces [F, 3]`` (defaults to ``faces``) map the surface to the texture atlas of
    ``texture_size`` texels per side. All tensors live on ``device``; results are identical on CPU
    and CUDA (see ``rasterizer``).
    """

    def __init__(
        self,
        vertices: np.ndarray,
        faces: np.ndarray,
        uv: np.ndarray | None = None,
        uv_faces: np.ndarray | None = None,
        *,
        texture_size: int = DEFAULT_TEXTURE_SIZE,
        render_size: int = DEFAULT_RENDER_SIZE,
        device: str | torch.device = "cpu",
    ) -> None:
        vertices = np.asarray(vertices, dtype=np.float32)
        faces = np.asarray(faces)
        if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
            raise ValueError(f"vertices must be a non-empty [V, 3] array, got shape {list(vertices.shape)}")
        if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
            raise ValueError(f"faces must be a non-empty [F, 3] array, got shape {list(faces.shape)}")
        if faces.min() < 0 or faces.max() >= len(vertices):
            raise ValueError(f"faces index vertices out of range [0, {len(vertices)})")
        self.device = torch.device(device)
        self.texture_size = int(texture_size)
        self.render_size = int(render_size)
        flipped = torch.from_numpy(to_renderer_axes(vertices)).to(self.device)
        self.vtx_pos, self.normalization = normalize_vertices(flipped)
        self.pos_idx = torch.from_numpy(faces.astype(np.int64)).to(self.device)
        self.projection = torch.from_numpy(orthographic_projection()).to(self.device)
        self.vtx_uv: torch.Tensor | None = None
        self.uv_idx: torch.Tensor | None = None
        self._texels: TexelTable | None = None
        self._rasters: OrderedDict[tuple[float, float, int], Rasterization] = OrderedDict()
        if uv is not None:
            uv = np.asarray(uv, dtype=np.float32)
            uv_faces = faces if uv_faces is None else np.asarray(uv_faces)
            if uv.ndim != 2 or uv.shape[1] != 2:
                raise ValueError(f"uv must be [V', 2], got shape {list(uv.shape)}")
            if uv_faces.shape != faces.shape or uv_faces.min() < 0 or uv_faces.max() >= len(uv):
                raise ValueError("uv_faces must be [F, 3] (same F as faces) and index uv in range")
            flipped_uv = uv.copy()
            flipped_uv[:, 1] = 1.0 - flipped_uv[:, 1]
            self.vtx_uv = torch.from_numpy(flipped_uv).to(self.device)
            self.uv_idx = torch.from_numpy(uv_faces.astype(np.int64)).to(self.device)

    @classmethod
    def from_trimesh(cls, mesh: trimesh.Trimesh, **kwargs) -> MeshRenderer:
        """Renderer for a trimesh; uses ``mesh.visual.uv`` when the mesh has UVs."""
        uv = getattr(mesh.visual, "uv", None)
        return cls(np.asarray(mesh.vertices), np.asarray(mesh.faces), uv, **kwargs)

    # ----------------------------------------------------------------------------------------------
    # Frames
    # ----------------------------------------------------------------------------------------------

    def normalized_input_vertices(self) -> np.ndarray:
        """The normalised vertices back in input axes (``get_mesh()`` of the reference), float32."""
        return from_renderer_axes(self.vtx_pos.cpu().numpy())

    def input_uv(self) -> np.ndarray:
        """The UVs back with v up (``1 - v_r``, as the reference's ``get_mesh()``), float32 ``[V', 2]``."""
        if self.vtx_uv is None:
            raise ValueError("the mesh has no UVs; run mesh_uv_wrap first")
        uv = self.vtx_uv.cpu().numpy().copy()
        uv[:, 1] = 1.0 - uv[:, 1]
        return uv

    def input_vertices(self) -> np.ndarray:
        """The vertices back in the input frame (scaling and centring undone), float32."""
        flipped = self.vtx_pos.cpu().numpy() / np.float32(self.normalization.scale) + self.normalization.center
        return from_renderer_axes(flipped)

    @property
    def texels(self) -> TexelTable:
        """The UV texel table (texel -> renderer-frame surface point), built on first use."""
        if self._texels is None:
            if self.vtx_uv is None or self.uv_idx is None:
                raise ValueError("the mesh has no UVs; run mesh_uv_wrap first")
            self._texels = build_texel_table(
                self.vtx_pos, self.pos_idx, self.vtx_uv, self.uv_idx, self.texture_size
            )
        return self._texels

    # ----------------------------------------------------------------------------------------------
    # Cameras
    # ----------------------------------------------------------------------------------------------

    def view_matrix(self, elevation_deg: float, azimuth_deg: float) -> torch.Tensor:
        """World-to-camera matrix of a view, float32 ``[4, 4]`` on the renderer's device."""
        return torch.from_numpy(view_matrix(elevation_deg, azimuth_deg, CAMERA_DISTANCE)).to(self.device)

    def camera_and_clip_positions(
        self, elevation_deg: float, azimuth_deg: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Homogeneous camera-space and clip-space vertices ``[V, 4]`` (float32) of a view.

        On the CPU these are float32 matrix products, as the reference computes them (bit-exact face
        ids in the tests). On other devices they are computed in float64 and rounded, so that a
        global TF32 setting cannot degrade them.
        """
        homogeneous = torch.cat([self.vtx_pos, torch.ones_like(self.vtx_pos[:, :1])], dim=1)
        view = self.view_matrix(elevation_deg, azimuth_deg)
        if self.device.type == "cpu":
            camera = torch.matmul(homogeneous, view.t())
            return camera, torch.matmul(camera, self.projection.t())
        camera = torch.matmul(homogeneous.double(), view.double().t())
        clip = torch.matmul(camera.float().double(), self.projection.double().t())
        return camera.float(), clip.float()

    def rasterize_view(
        self, elevation_deg: float, azimuth_deg: float, resolution: int | None = None
    ) -> Rasterization:
        """Rasterize the mesh as seen from (elevation, azimuth) at ``resolution`` (default render size).

        The last ``RASTER_CACHE_VIEWS`` rasterizations are kept, so rendering a view's normal and
        position maps and then baking that view rasterizes it once.
        """
        key = (float(elevation_deg), float(azimuth_deg), int(resolution or self.render_size))
        if key in self._rasters:
            self._rasters.move_to_end(key)
            return self._rasters[key]
        _camera, clip = self.camera_and_clip_positions(elevation_deg, azimuth_deg)
        raster = rasterize(clip, self.pos_idx, key[2])
        self._rasters[key] = raster
        while len(self._rasters) > RASTER_CACHE_VIEWS:
            self._rasters.popitem(last=False)
        return raster

    # ----------------------------------------------------------------------------------------------
    # Renders
    # ----------------------------------------------------------------------------------------------

    def render_face_ids(self, elevation_deg: float, azimuth_deg: float, resolution: int | None = None) -> torch.Tensor:
        """Int32 ``[R, R]`` face index + 1 per pixel, 0 = background."""
        return self.rasterize_view(elevation_deg, azimuth_deg, resolution).face_ids.clone()

    def face_normals(self) -> torch.Tensor:
        """Unit face normals ``[F, 3]`` in the renderer frame (winding as stored)."""
        corners = self.vtx_pos[self.pos_idx]
        return F.normalize(torch.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=-1), dim=-1)

    def render_normal(self, elevation_deg: float, azimuth_deg: float, resolution: int | None = None) -> torch.Tensor:
        """World-space, flat-shaded normal map float32 ``[R, R, 3]`` in [0, 1]: ``(n + 1) / 2``.

        In input axes a pixel is ``((1 + n_x) / 2, (1 - n_z) / 2, (1 + n_y) / 2)``; background is 1.
        """
        raster = self.rasterize_view(elevation_deg, azimuth_deg, resolution)
        # One colour per face (row 0: background), gathered per pixel: the same numbers as mapping
        # every pixel's normal, F instead of R^2 evaluations.
        normals = self.face_normals()
        table = torch.cat([torch.full_like(normals[:1], BACKGROUND_VALUE), normals]) + 1
        return (table * 0.5)[raster.face_ids.to(torch.int64)]

    def render_position(self, elevation_deg: float, azimuth_deg: float, resolution: int | None = None) -> torch.Tensor:
        """Position map float32 ``[R, R, 3]`` in [0, 1]: ``0.5 - r' / RENDERER_SCALE``; background is 1.

        In input axes a pixel is ``0.5 + (x - c_x, -(z - c_z), y - c_y) / (2 D)``.
        """
        raster = self.rasterize_view(elevation_deg, azimuth_deg, resolution)
        colors = 0.5 - self.vtx_pos / RENDERER_SCALE
        pixel, values = interpolate_covered(colors, raster, self.pos_idx)
        height, width = raster.face_ids.shape
        position = torch.full((height * width, 3), BACKGROUND_VALUE, dtype=values.dtype, device=values.device)
        position[pixel] = values
        return position.view(height, width, 3)


def to_uint8_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 with ``floor(255 v)`` (the reference's PIL conversion)."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    return (np.clip(array.astype(np.float32), 0.0, 1.0) * np.float32(255)).astype(np.uint8)
