"""Textured-mesh assembly and binary glTF 2.0 export, in memory (FACTS §11).

``textured_mesh`` turns baked textures into a ``trimesh.Trimesh`` with a ``PBRMaterial`` exactly as
the reference's export does: textures halved with a bilinear ``cv2.resize``, converted to 8 bits by
truncation, metallic and roughness taken from the model's MR texture according to ``MR_LAYOUT`` and
packed the glTF way (R = 255 occlusion placeholder, G = roughness, B = metallic), metallicFactor and
roughnessFactor 1.0.

``export_glb`` writes such a mesh (or a plain one) as GLB bytes: no file is touched, the output is
deterministic and compact by default (JPEG textures, core glTF 2.0); PNG (lossless), WebP textures
(``EXT_texture_webp``) and 16-bit geometry (``KHR_mesh_quantization``) are options.
"""

from __future__ import annotations

import io
import json
import logging
import os
import struct
from dataclasses import dataclass

import cv2
import numpy as np
import trimesh
from PIL import Image
from trimesh.visual.material import PBRMaterial

from hy3dpaint.uv import float32_uv_visuals

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Metallic-roughness channel layout of the model's MR images (FACTS §11, §12.1)
# --------------------------------------------------------------------------------------------------

#: Environment variable that selects the layout of the model's MR images.
MR_LAYOUT_ENV = "HY3D_MR_LAYOUT"
#: ``"reference"``: metallic = R, roughness = G (what upstream's export reads; the default, for
#: parity). ``"gltf"``: metallic = B, roughness = G (the layout of the training data). Which one the
#: real weights produce is open; flip this once real outputs are seen.
MR_LAYOUTS = {"reference": (0, 1), "gltf": (2, 1)}
DEFAULT_MR_LAYOUT = "reference"
#: Value written to the unused R (occlusion) channel of the packed metallic-roughness texture.
OCCLUSION_PLACEHOLDER = 255

# --------------------------------------------------------------------------------------------------
# Export settings
# --------------------------------------------------------------------------------------------------

TEXTURE_FORMATS = ("png", "jpeg", "webp")
#: Default texture encoding: JPEG is core glTF 2.0 (every viewer opens it) and keeps the default GLB
#: (40k faces, two 2048^2 textures) under 2 MB at base-colour SSIM >= 0.98 (docs/paint.md).
DEFAULT_TEXTURE_FORMAT = "jpeg"
#: Default quality of lossy texture encodings (1-100); JPEG at 90 and above keeps full-resolution
#: chroma (4:4:4). See docs/paint.md for sizes and SSIM.
DEFAULT_QUALITY = {"jpeg": 90, "webp": 95}
#: JPEG qualities from this one up are encoded without chroma subsampling.
JPEG_FULL_CHROMA_QUALITY = 90
MIN_QUALITY, MAX_QUALITY = 1, 100
#: Bits of quantized positions and texture coordinates (``KHR_mesh_quantization``).
QUANTIZATION_BITS = 16
#: Name of the material, as the reference.
MATERIAL_NAME = "PBR_Material"

_MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_GLB_MAGIC = 0x46546C67
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942
_FLOAT, _UNSIGNED_SHORT, _UNSIGNED_INT, _BYTE = 5126, 5123, 5125, 5120
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


def mr_layout(layout: str | None = None) -> str:
    """The MR layout in force: ``layout`` if given, else ``$HY3D_MR_LAYOUT``, else the default.

    Raises ``ValueError`` naming the allowed layouts for an unknown value.
    """
    value = layout if layout is not None else os.environ.get(MR_LAYOUT_ENV, DEFAULT_MR_LAYOUT)
    if value not in MR_LAYOUTS:
        source = "layout" if layout is not None else MR_LAYOUT_ENV
        raise ValueError(f"{source}={value!r} is not a known MR layout; allowed: {', '.join(MR_LAYOUTS)}")
    return value


def halve_texture(texture: np.ndarray) -> np.ndarray:
    """Bilinear ``cv2.resize`` to half the size (the reference's ``downsample=True``)."""
    height, width = texture.shape[:2]
    return cv2.resize(texture, (width // 2, height // 2), interpolation=cv2.INTER_LINEAR)


def float_to_uint8(texture: np.ndarray) -> np.ndarray:
    """``[0, 1]`` floats to 8 bits by truncation, ``uint8(255 v)``, as the reference's file writers."""
    return (np.clip(np.asarray(texture, dtype=np.float32), 0.0, 1.0) * np.float32(255)).astype(np.uint8)


def _as_float_texture(texture: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(texture)
    if array.ndim != 3 or array.shape[2] < 3:
        raise ValueError(f"{name} must be [H, W, 3] (RGB), got shape {list(array.shape)}")
    if array.dtype == np.uint8:
        return array[..., :3].astype(np.float32) / np.float32(255)
    return array[..., :3].astype(np.float32)


def pack_metallic_roughness(metallic: np.ndarray, roughness: np.ndarray) -> np.ndarray:
    """glTF metallic-roughness image uint8 ``[H, W, 3]``: R = 255, G = roughness, B = metallic."""
    metallic, roughness = np.asarray(metallic), np.asarray(roughness)
    if metallic.shape != roughness.shape or metallic.ndim != 2:
        raise ValueError(f"metallic and roughness must be [H, W] of one shape, got {metallic.shape} and {roughness.shape}")
    packed = np.empty((*metallic.shape, 3), dtype=np.uint8)
    packed[..., 0] = OCCLUSION_PLACEHOLDER
    packed[..., 1] = roughness
    packed[..., 2] = metallic
    return packed


def textured_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    uv: np.ndarray,
    albedo: np.ndarray,
    metallic_roughness: np.ndarray,
    *,
    downsample: bool = True,
    layout: str | None = None,
) -> trimesh.Trimesh:
    """A textured trimesh as the reference exports it.

    ``vertices [V, 3]`` (input frame), ``faces [F, 3]``, ``uv [V, 2]`` (v up); ``albedo`` and the
    model's ``metallic_roughness`` texture are ``[T, T, 3]`` float in [0, 1] or uint8. With
    ``downsample`` both are halved first. ``layout`` overrides ``$HY3D_MR_LAYOUT``.
    """
    channels = MR_LAYOUTS[mr_layout(layout)]
    albedo = _as_float_texture(albedo, "albedo")
    mr = _as_float_texture(metallic_roughness, "metallic_roughness")
    if downsample:
        albedo, mr = halve_texture(albedo), halve_texture(mr)
    return pbr_mesh(
        vertices,
        faces,
        uv,
        float_to_uint8(albedo),
        metallic=float_to_uint8(mr[..., channels[0]]),
        roughness=float_to_uint8(mr[..., channels[1]]),
    )


def pbr_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    uv: np.ndarray,
    base_color: np.ndarray,
    *,
    metallic: np.ndarray,
    roughness: np.ndarray,
) -> trimesh.Trimesh:
    """Trimesh with UVs and a ``PBRMaterial``: base colour uint8 ``[H, W, 3]``, metallic and roughness
    uint8 ``[H, W]`` (packed into one glTF metallicRoughness image), factors 1.0 as the reference."""
    base_color = np.asarray(base_color)
    if base_color.dtype != np.uint8 or base_color.ndim != 3 or base_color.shape[2] != 3:
        raise ValueError(f"base_color must be uint8 [H, W, 3], got {base_color.dtype} {list(base_color.shape)}")
    uv = np.asarray(uv, dtype=np.float32)
    vertices = np.asarray(vertices, dtype=np.float32)
    if uv.shape != (len(vertices), 2):
        raise ValueError(f"uv must be [V, 2] = [{len(vertices)}, 2], got {list(uv.shape)}")
    material = PBRMaterial(
        name=MATERIAL_NAME,
        baseColorTexture=Image.fromarray(base_color, mode="RGB"),
        metallicRoughnessTexture=Image.fromarray(pack_metallic_roughness(metallic, roughness), mode="RGB"),
        baseColorFactor=[255, 255, 255, 255],
        metallicFactor=1.0,
        roughnessFactor=1.0,
    )
    return trimesh.Trimesh(
        vertices=vertices, faces=np.asarray(faces), visual=float32_uv_visuals(uv, material), process=False
    )


# --------------------------------------------------------------------------------------------------
# GLB writer
# --------------------------------------------------------------------------------------------------


@dataclass
class _Textures:
    base_color: Image.Image | None
    metallic_roughness: Image.Image | None
    metallic_factor: float
    roughness_factor: float
    base_color_factor: list[float]


def _material_textures(mesh: trimesh.Trimesh) -> _Textures | None:
    """The textures of a textured mesh, or None for a plain one."""
    visual = mesh.visual
    uv = getattr(visual, "uv", None)
    material = getattr(visual, "material", None)
    if uv is None or material is None:
        return None
    if isinstance(material, PBRMaterial):
        factor = material.baseColorFactor
        base_color_factor = [1.0, 1.0, 1.0, 1.0] if factor is None else (np.asarray(factor, np.float64) / 255).tolist()
        return _Textures(
            base_color=material.baseColorTexture,
            metallic_roughness=material.metallicRoughnessTexture,
            metallic_factor=1.0 if material.metallicFactor is None else float(material.metallicFactor),
            roughness_factor=1.0 if material.roughnessFactor is None else float(material.roughnessFactor),
            base_color_factor=base_color_factor,
        )
    image = getattr(material, "image", None)
    return _Textures(image, None, 1.0, 1.0, [1.0, 1.0, 1.0, 1.0])


def encode_image(image: Image.Image, texture_format: str, quality: int | None = None) -> bytes:
    """Encode a texture deterministically as PNG, JPEG or WebP (RGB)."""
    image = image.convert("RGB")
    buffer = io.BytesIO()
    if texture_format == "png":
        image.save(buffer, format="PNG", optimize=False, compress_level=6)
    elif texture_format == "jpeg":
        subsampling = 0 if quality >= JPEG_FULL_CHROMA_QUALITY else 2
        image.save(buffer, format="JPEG", quality=quality, subsampling=subsampling, optimize=True)
    elif texture_format == "webp":
        image.save(buffer, format="WEBP", quality=quality, method=4, exact=False)
    else:
        raise ValueError(f"texture_format must be one of {', '.join(TEXTURE_FORMATS)}, got {texture_format!r}")
    return buffer.getvalue()


class _BinaryBuffer:
    """Accumulates buffer views (4-byte aligned) and accessors of a glTF asset."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.length = 0
        self.buffer_views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, data: bytes, *, target: int | None = None, stride: int | None = None) -> int:
        padding = (-self.length) % 4
        if padding:
            self.chunks.append(b"\x00" * padding)
            self.length += padding
        entry = {"buffer": 0, "byteOffset": self.length, "byteLength": len(data)}
        if stride is not None:
            entry["byteStride"] = stride
        if target is not None:
            entry["target"] = target
        self.chunks.append(data)
        self.length += len(data)
        self.buffer_views.append(entry)
        return len(self.buffer_views) - 1

    def accessor(self, view: int, component_type: int, count: int, kind: str, **extra) -> int:
        entry = {"bufferView": view, "componentType": component_type, "count": int(count), "type": kind}
        entry.update(extra)
        self.accessors.append(entry)
        return len(self.accessors) - 1

    def data(self) -> bytes:
        blob = b"".join(self.chunks)
        return blob + b"\x00" * ((-len(blob)) % 4)


def _strided(array: np.ndarray, stride_bytes: int) -> bytes:
    """Interleave-pad rows of ``array`` to ``stride_bytes`` (glTF vertex strides are multiples of 4)."""
    row = array.reshape(len(array), -1)
    row_bytes = row.dtype.itemsize * row.shape[1]
    if row_bytes == stride_bytes:
        return np.ascontiguousarray(row).tobytes()
    padded = np.zeros((len(row), stride_bytes), dtype=np.uint8)
    padded[:, :row_bytes] = np.ascontiguousarray(row).view(np.uint8).reshape(len(row), row_bytes)
    return padded.tobytes()


def export_glb(
    mesh: trimesh.Trimesh,
    *,
    texture_format: str = DEFAULT_TEXTURE_FORMAT,
    quality: int | None = None,
    quantize: bool = False,
    normals: bool = False,
) -> bytes:
    """Binary glTF 2.0 of ``mesh``, built in memory; same input, same bytes.

    Textured meshes (``TextureVisuals`` with UVs and a ``PBRMaterial``) get a baseColor and a
    metallicRoughness texture; other meshes export geometry only. ``texture_format``: ``"jpeg"``
    (default; core glTF 2.0), ``"png"`` (lossless) or ``"webp"`` (``EXT_texture_webp``, which
    viewers must support); ``quality`` 1-100 for the lossy formats (default ``DEFAULT_QUALITY``). ``quantize`` stores positions and texture coordinates as
    16-bit integers (``KHR_mesh_quantization``, positions dequantized by the node transform).
    ``normals`` adds smooth vertex normals (the reference writes none).
    Raises ``ValueError`` for an empty mesh or bad settings.
    """
    if texture_format not in TEXTURE_FORMATS:
        raise ValueError(f"texture_format must be one of {', '.join(TEXTURE_FORMATS)}, got {texture_format!r}")
    if texture_format == "png":
        if quality is not None:
            raise ValueError("quality applies to jpeg and webp only; PNG textures are lossless")
    else:
        quality = DEFAULT_QUALITY[texture_format] if quality is None else quality
        if isinstance(quality, bool) or not isinstance(quality, int) or not MIN_QUALITY <= quality <= MAX_QUALITY:
            raise ValueError(f"quality must be an integer in [{MIN_QUALITY}, {MAX_QUALITY}], got {quality!r}")
    vertices = np.asarray(mesh.vertices, dtype=np.float32)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if len(vertices) == 0 or len(faces) == 0:
        raise ValueError("cannot export an empty mesh (no vertices or no faces)")
    if not np.isfinite(vertices).all():
        raise ValueError("mesh vertices contain NaN or infinite values")

    textures = _material_textures(mesh)
    buffer = _BinaryBuffer()
    extensions: list[str] = []
    node: dict = {"mesh": 0}
    attributes: dict[str, int] = {}

    attributes["POSITION"] = _write_positions(buffer, vertices, quantize, node)
    if normals:
        attributes["NORMAL"] = _write_normals(buffer, mesh, quantize)
    if textures is not None:
        uv = np.asarray(mesh.visual.uv, dtype=np.float32)
        if uv.shape != (len(vertices), 2):
            raise ValueError(f"mesh.visual.uv must be [V, 2] = [{len(vertices)}, 2], got {list(uv.shape)}")
        attributes["TEXCOORD_0"] = _write_texcoords(buffer, uv, quantize)
    if quantize:
        extensions.append("KHR_mesh_quantization")
    indices = _write_indices(buffer, faces, len(vertices))

    primitive: dict = {"attributes": attributes, "indices": indices, "mode": 4}
    gltf: dict = {"asset": {"version": "2.0", "generator": "hy3d-triton hy3dpaint.export"}}
    if textures is not None:
        primitive["material"] = 0
        _write_material(gltf, buffer, textures, texture_format, quality, extensions)
    gltf.update(
        {
            "scene": 0,
            "scenes": [{"nodes": [0]}],
            "nodes": [node],
            "meshes": [{"primitives": [primitive]}],
            "accessors": buffer.accessors,
            "bufferViews": buffer.buffer_views,
        }
    )
    binary = buffer.data()
    gltf["buffers"] = [{"byteLength": len(binary)}]
    if extensions:
        gltf["extensionsUsed"] = sorted(set(extensions))
        gltf["extensionsRequired"] = sorted(set(extensions))
    return _glb_container(gltf, binary)


def _write_positions(buffer: _BinaryBuffer, vertices: np.ndarray, quantize: bool, node: dict) -> int:
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    if not quantize:
        view = buffer.view(vertices.tobytes(), target=_ARRAY_BUFFER)
        return buffer.accessor(view, _FLOAT, len(vertices), "VEC3", min=low.tolist(), max=high.tolist())
    levels = (1 << QUANTIZATION_BITS) - 1
    extent = np.where(high > low, high - low, 1.0).astype(np.float64)
    quantized = np.rint((vertices - low) / extent * levels).astype(np.uint16)
    node["translation"] = low.astype(np.float64).tolist()
    node["scale"] = (extent / levels).tolist()
    view = buffer.view(_strided(quantized, 8), target=_ARRAY_BUFFER, stride=8)
    return buffer.accessor(
        view, _UNSIGNED_SHORT, len(vertices), "VEC3",
        min=quantized.min(axis=0).astype(int).tolist(), max=quantized.max(axis=0).astype(int).tolist(),
    )


def _write_normals(buffer: _BinaryBuffer, mesh: trimesh.Trimesh, quantize: bool) -> int:
    vertex_normals = np.asarray(mesh.vertex_normals, dtype=np.float32)
    length = np.linalg.norm(vertex_normals, axis=1, keepdims=True)
    vertex_normals = np.where(length > 0, vertex_normals / np.maximum(length, 1e-12), [[0.0, 0.0, 1.0]]).astype(np.float32)
    if not quantize:
        view = buffer.view(vertex_normals.tobytes(), target=_ARRAY_BUFFER)
        return buffer.accessor(view, _FLOAT, len(vertex_normals), "VEC3")
    packed = np.clip(np.rint(vertex_normals * 127), -127, 127).astype(np.int8)
    view = buffer.view(_strided(packed, 4), target=_ARRAY_BUFFER, stride=4)
    return buffer.accessor(view, _BYTE, len(packed), "VEC3", normalized=True)


def _write_texcoords(buffer: _BinaryBuffer, uv: np.ndarray, quantize: bool) -> int:
    texcoords = np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1).astype(np.float32)  # glTF: t = 1 - v
    if quantize and texcoords.min() >= 0.0 and texcoords.max() <= 1.0:
        levels = (1 << QUANTIZATION_BITS) - 1
        packed = np.rint(texcoords * levels).astype(np.uint16)
        view = buffer.view(packed.tobytes(), target=_ARRAY_BUFFER)
        return buffer.accessor(view, _UNSIGNED_SHORT, len(packed), "VEC2", normalized=True)
    view = buffer.view(texcoords.tobytes(), target=_ARRAY_BUFFER)
    return buffer.accessor(view, _FLOAT, len(texcoords), "VEC2")


def _write_indices(buffer: _BinaryBuffer, faces: np.ndarray, vertex_count: int) -> int:
    if faces.min() < 0 or faces.max() >= vertex_count:
        raise ValueError(f"faces index vertices out of range [0, {vertex_count})")
    # 65535 is the primitive-restart value of 16-bit indices and may not be used as an index.
    small = vertex_count <= 0xFFFF
    flat = faces.reshape(-1).astype(np.uint16 if small else np.uint32)
    view = buffer.view(flat.tobytes(), target=_ELEMENT_ARRAY_BUFFER)
    return buffer.accessor(view, _UNSIGNED_SHORT if small else _UNSIGNED_INT, flat.size, "SCALAR")


def _write_material(gltf, buffer, textures: _Textures, texture_format, quality, extensions) -> None:
    images, gltf_textures = [], []
    pbr: dict = {
        "baseColorFactor": textures.base_color_factor,
        "metallicFactor": textures.metallic_factor,
        "roughnessFactor": textures.roughness_factor,
    }
    for key, image in (("baseColorTexture", textures.base_color), ("metallicRoughnessTexture", textures.metallic_roughness)):
        if image is None:
            continue
        data = encode_image(image, texture_format, quality)
        images.append({"bufferView": buffer.view(data), "mimeType": _MIME_TYPES[texture_format]})
        if texture_format == "webp":
            gltf_textures.append({"extensions": {"EXT_texture_webp": {"source": len(images) - 1}}})
            extensions.append("EXT_texture_webp")
        else:
            gltf_textures.append({"source": len(images) - 1})
        pbr[key] = {"index": len(gltf_textures) - 1, "texCoord": 0}
    gltf["materials"] = [
        {"name": MATERIAL_NAME, "pbrMetallicRoughness": pbr, "alphaMode": "OPAQUE", "doubleSided": False}
    ]
    if images:
        gltf["images"] = images
        gltf["textures"] = gltf_textures


def _glb_container(gltf: dict, binary: bytes) -> bytes:
    text = json.dumps(gltf, separators=(",", ":"), allow_nan=False).encode("utf-8")
    text += b" " * ((-len(text)) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join(
        [
            struct.pack("<III", _GLB_MAGIC, 2, total),
            struct.pack("<II", len(text), _CHUNK_JSON),
            text,
            struct.pack("<II", len(binary), _CHUNK_BIN),
            binary,
        ]
    )
