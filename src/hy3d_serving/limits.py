"""Limits the stages enforce on the tensors they pass to each other (the request limits are in the contract)."""

from __future__ import annotations

from hy3d_client.contract import PARAMETERS_BY_NAME

#: Most faces a mesh handed to ``paint_pbr`` may have: the largest FACE_COUNT a request may ask for.
MAX_MESH_FACES = int(PARAMETERS_BY_NAME["FACE_COUNT"].maximum)
#: Most vertices a mesh handed to ``paint_pbr`` may have (every face with its own three vertices).
MAX_MESH_VERTICES = 3 * MAX_MESH_FACES
#: Longest BYTES value accepted for a text tensor such as ``SHAPE_ENGINE``, in bytes.
MAX_TEXT_BYTES = 256
