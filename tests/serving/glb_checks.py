"""Checks on a GLB shared by the serving tests: parse it, count its faces, find its textures, validate it."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pygltflib
import trimesh

REPO_ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = REPO_ROOT / "scripts" / "validate-gltf.js"
#: Seconds the Khronos validator may take on one file.
VALIDATOR_TIMEOUT_S = 120


def load_mesh(glb: bytes) -> trimesh.Trimesh:
    """The GLB as one trimesh mesh (all primitives concatenated)."""
    scene = trimesh.load(io.BytesIO(glb), file_type="glb", force="scene")
    return scene.dump(concatenate=True)


def face_count(glb: bytes) -> int:
    """Number of triangles over every primitive of the GLB (read with pygltflib)."""
    gltf = pygltflib.GLTF2.load_from_bytes(glb)
    total = 0
    for mesh in gltf.meshes:
        for primitive in mesh.primitives:
            count = gltf.accessors[primitive.indices].count if primitive.indices is not None else (
                gltf.accessors[primitive.attributes.POSITION].count)
            total += count // 3
    return total


def base_color_textures(glb: bytes) -> list[int]:
    """Texture indices used as baseColorTexture by the GLB's materials."""
    gltf = pygltflib.GLTF2.load_from_bytes(glb)
    return [m.pbrMetallicRoughness.baseColorTexture.index for m in gltf.materials
            if m.pbrMetallicRoughness and m.pbrMetallicRoughness.baseColorTexture is not None]


def validation_report(glb: bytes, directory: Path, name: str = "asset.glb") -> dict:
    """The Khronos glTF validator's report (numErrors, numWarnings, messages) for ``glb``."""
    path = directory / name
    path.write_bytes(glb)
    result = subprocess.run(["node", str(VALIDATOR), str(path)], capture_output=True, text=True,
                            timeout=VALIDATOR_TIMEOUT_S, check=False)
    assert result.stdout, result.stderr
    return json.loads(result.stdout.splitlines()[0])


def glb_arrays(glb: bytes) -> tuple:
    """(vertices float32 [V, 3], faces int64 [F, 3]) of a single-primitive GLB, exactly as stored."""
    import numpy as np

    gltf = pygltflib.GLTF2.load_from_bytes(glb)
    (primitive,) = gltf.meshes[0].primitives
    blob = gltf.binary_blob()

    def read(accessor_index: int, dtype, width: int):
        accessor = gltf.accessors[accessor_index]
        view = gltf.bufferViews[accessor.bufferView]
        start = (view.byteOffset or 0) + (accessor.byteOffset or 0)
        count = accessor.count * width
        return np.frombuffer(blob, dtype=dtype, count=count, offset=start).reshape(-1, width)

    component = {5121: np.uint8, 5123: np.uint16, 5125: np.uint32}[gltf.accessors[primitive.indices].componentType]
    vertices = read(primitive.attributes.POSITION, np.float32, 3)
    faces = read(primitive.indices, component, 1).reshape(-1, 3).astype(np.int64)
    return vertices, faces
