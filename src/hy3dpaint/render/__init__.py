"""Rendering for the texture stage: camera model, torch rasterizer, mesh renderer, UV texel table."""

from hy3dpaint.render.camera import CAMERA_DISTANCE, ORTHO_SCALE, orthographic_projection, view_matrix
from hy3dpaint.render.mesh_renderer import MeshRenderer, to_uint8_image
from hy3dpaint.render.rasterizer import Rasterization, interpolate, rasterize
from hy3dpaint.render.texels import TexelTable, build_texel_table

__all__ = [
    "CAMERA_DISTANCE",
    "ORTHO_SCALE",
    "MeshRenderer",
    "Rasterization",
    "TexelTable",
    "build_texel_table",
    "interpolate",
    "orthographic_projection",
    "rasterize",
    "to_uint8_image",
    "view_matrix",
]
