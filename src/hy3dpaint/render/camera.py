"""Camera model of the texture stage (FACTS §3): orbit views around the origin, orthographic lens.

All matrices act on column vectors in the *renderer frame* (see ``mesh_renderer``):
``p_camera = view_matrix @ p`` and ``p_clip = projection @ p_camera``. They are computed in float64
and returned as float32, as the reference does.

Angles are degrees. In input (glTF, +Y up) terms: azimuth 0 / elevation 0 looks at the object from
+Z (its front), azimuth 90 from +X, 180 from -Z, 270 from -X; positive elevation puts the camera
above (+Y), +90 is the top view and -90 the bottom view.
"""

from __future__ import annotations

import numpy as np

#: Distance of every camera from the origin (renderer-frame units).
CAMERA_DISTANCE = 1.45
#: Width and height of the orthographic view volume (renderer-frame units).
ORTHO_SCALE = 1.2
#: Near and far clipping planes of the orthographic projection.
ORTHO_NEAR = 0.1
ORTHO_FAR = 100.0

_RENDERER_UP = np.array([0.0, 0.0, 1.0])


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def view_matrix(elevation_deg: float, azimuth_deg: float, distance: float = CAMERA_DISTANCE) -> np.ndarray:
    """World-to-camera matrix ``[4, 4]`` float32 of a camera orbiting the origin and looking at it.

    The camera sits at ``distance * (cos e cos a, cos e sin a, sin e)`` with ``e = -elevation`` and
    ``a = azimuth + 90`` (renderer frame, +Z up). Its right axis is ``forward x +Z`` and its up axis
    ``right x forward``; it looks down its own -Z. At elevation +-90 the cosine is ~6e-17 rather
    than 0, which keeps ``forward x +Z`` non-zero: the top and bottom views keep an azimuth-dependent
    roll, as in the reference.
    """
    elevation = np.radians(-float(elevation_deg))
    azimuth = np.radians(float(azimuth_deg) + 90.0)
    position = float(distance) * np.array(
        [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]
    )
    forward = _unit(-position)
    right = _unit(np.cross(forward, _RENDERER_UP))
    up = _unit(np.cross(right, forward))
    rotation = np.stack([right, up, -forward], axis=1)  # camera-to-world columns
    world_to_camera = np.eye(4)
    world_to_camera[:3, :3] = rotation.T
    world_to_camera[:3, 3] = -rotation.T @ position
    return world_to_camera.astype(np.float32)


def orthographic_projection(
    scale: float = ORTHO_SCALE, near: float = ORTHO_NEAR, far: float = ORTHO_FAR
) -> np.ndarray:
    """OpenGL-style orthographic projection ``[4, 4]`` float32 of a ``scale`` x ``scale`` view volume."""
    half = float(scale) / 2.0
    projection = np.zeros((4, 4))
    projection[0, 0] = 1.0 / half
    projection[1, 1] = 1.0 / half
    projection[2, 2] = -2.0 / (far - near)
    projection[2, 3] = -(far + near) / (far - near)
    projection[3, 3] = 1.0
    return projection.astype(np.float32)
