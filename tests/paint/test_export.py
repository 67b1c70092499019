"""Textured-mesh assembly parity (FACTS §11; vectors ``export/``) and GLB export promises."""

import io
import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pygltflib
import pytest
import trimesh
from PIL import Image

from hy3dpaint.export import (
    MR_LAYOUT_ENV,
    export_glb,
    float_to_uint8,
    halve_texture,
    textured_mesh,
)
from hy3dpaint.render import MeshRenderer

ROOT = Path(__file__).resolve().parent.parent.parent
DATA = ROOT / "tests" / "data" / "paint"


@pytest.fixture(scope="module")
def vectors():
    return np.load(DATA / "export" / "export.npz")


@pytest.fixture(scope="module")
def bake():
    return np.load(DATA / "bake" / "bake.npz")


@pytest.fixture(scope="module")
def renderer():
    mesh = np.load(DATA / "mesh" / "uv_wrapped.npz")
    return MeshRenderer(mesh["vertices"], mesh["faces"], mesh["uv"], texture_size=128, render_size=128)


@pytest.fixture(scope="module")
def mesh(renderer, bake):
    return textured_mesh(
        renderer.input_vertices(), renderer.pos_idx.numpy(), renderer.input_uv(),
        bake["inpainted_albedo_uint8"], bake["inpainted_mr_uint8"], layout="reference",
    )


def _validate(tmp_path: Path, data: bytes) -> dict:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    path = tmp_path / "asset.glb"
    path.write_bytes(data)
    result = subprocess.run(
        ["node", str(ROOT / "scripts" / "validate-gltf.js"), str(path)], capture_output=True, text=True, timeout=120
    )
    return json.loads(result.stdout)


# --------------------------------------------------------------------------------------------------
# Parity of the exported arrays
# --------------------------------------------------------------------------------------------------


def test_geometry_is_written_in_the_input_frame_with_v_up_uvs(renderer, vectors, mesh):
    np.testing.assert_allclose(renderer.input_vertices(), vectors["saved_vtx_pos"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(renderer.input_uv(), vectors["saved_vtx_uv"])
    np.testing.assert_array_equal(mesh.faces, vectors["saved_pos_idx"])
    np.testing.assert_allclose(mesh.vertices, vectors["saved_vtx_pos"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(mesh.visual.uv, vectors["saved_vtx_uv"])


def test_textures_are_halved_like_the_reference(bake, vectors):
    albedo = bake["inpainted_albedo_uint8"].astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(halve_texture(albedo), vectors["saved_texture"])
    mr = bake["inpainted_mr_uint8"].astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(float_to_uint8(mr).astype(np.float32) / np.float32(255), vectors["tex_mr_after_set_texture_mr"])
    halved = halve_texture(vectors["tex_mr_after_set_texture_mr"])
    np.testing.assert_array_equal(np.repeat(halved[..., :1], 3, axis=2), vectors["saved_metallic"])
    np.testing.assert_array_equal(np.repeat(halved[..., 1:2], 3, axis=2), vectors["saved_roughness"])


def test_material_textures_carry_the_halved_maps_with_gltf_channel_packing(mesh, vectors):
    material = mesh.visual.material
    assert isinstance(material, trimesh.visual.material.PBRMaterial)
    np.testing.assert_array_equal(np.asarray(material.baseColorTexture), float_to_uint8(vectors["saved_texture"]))
    packed = np.asarray(material.metallicRoughnessTexture)
    assert (packed[..., 0] == 255).all()
    np.testing.assert_array_equal(packed[..., 1], float_to_uint8(vectors["saved_roughness"][..., 0]))
    np.testing.assert_array_equal(packed[..., 2], float_to_uint8(vectors["saved_metallic"][..., 0]))


def test_reference_mr_combined_png_is_our_packing_after_its_jpeg_round_trip(mesh, vectors):
    # The reference wrote metallic and roughness as cv2 JPEGs (quality 95) and re-read them.
    packed = np.asarray(mesh.visual.material.metallicRoughnessTexture)

    def jpeg_round_trip(channel):
        ok, encoded = cv2.imencode(".jpg", np.repeat(channel[..., None], 3, axis=2), [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        return np.asarray(Image.open(io.BytesIO(encoded.tobytes())).convert("L"))

    expected = np.stack([packed[..., 0], jpeg_round_trip(packed[..., 1]), jpeg_round_trip(packed[..., 2])], axis=2)
    np.testing.assert_array_equal(expected, vectors["mr_combined_png"])


def test_material_summary_matches_the_reference(mesh):
    reference = json.loads((DATA / "export" / "glb_summary.json").read_text())
    gltf = json.loads(_json_chunk(export_glb(mesh)))
    ours, theirs = gltf["materials"][0], reference["materials"][0]
    for key in ("name", "alphaMode", "doubleSided"):
        assert ours[key] == theirs[key]
    for key in ("baseColorFactor", "metallicFactor", "roughnessFactor", "baseColorTexture", "metallicRoughnessTexture"):
        assert ours["pbrMetallicRoughness"][key] == theirs["pbrMetallicRoughness"][key]
    primitive, reference_primitive = gltf["meshes"][0]["primitives"][0], reference["meshes"][0]["primitives"][0]
    assert sorted(primitive["attributes"]) == sorted(reference_primitive["attributes"])
    assert primitive["mode"] == reference_primitive["mode"] and primitive["material"] == 0
    assert [t["source"] for t in gltf["textures"]] == [t["source"] for t in reference["textures"]]


def _json_chunk(data: bytes) -> bytes:
    length = int.from_bytes(data[12:16], "little")
    return data[20 : 20 + length]


# --------------------------------------------------------------------------------------------------
# GLB promises
# --------------------------------------------------------------------------------------------------

VARIANTS = [
    {"texture_format": "png"},
    {"texture_format": "jpeg"},
    {"texture_format": "webp"},
    {"texture_format": "jpeg", "quantize": True},
    {"texture_format": "webp", "quantize": True, "normals": True},
    {"texture_format": "png", "normals": True},
]


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_glb_is_valid_under_the_khronos_validator(tmp_path, mesh, options):
    report = _validate(tmp_path, export_glb(mesh, **options))
    assert report["numErrors"] == 0, report["messages"]
    assert report["numWarnings"] == 0, report["messages"]


def test_plain_meshes_export_geometry_only(tmp_path):
    data = export_glb(trimesh.creation.icosphere(2))
    report = _validate(tmp_path, data)
    assert report["numErrors"] == 0, report["messages"]
    gltf = json.loads(_json_chunk(data))
    assert "materials" not in gltf and "images" not in gltf
    assert set(gltf["meshes"][0]["primitives"][0]["attributes"]) == {"POSITION"}


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_export_is_deterministic(mesh, options):
    assert export_glb(mesh, **options) == export_glb(mesh, **options)


def test_nothing_is_written_to_the_working_directory(tmp_path, monkeypatch, mesh):
    monkeypatch.chdir(tmp_path)
    export_glb(mesh)
    export_glb(mesh, texture_format="webp", quantize=True)
    assert list(tmp_path.iterdir()) == []


def test_trimesh_reads_back_geometry_uvs_and_both_textures_losslessly_as_png(mesh):
    scene = trimesh.load(io.BytesIO(export_glb(mesh, texture_format="png")), file_type="glb")
    loaded = scene.to_geometry()
    np.testing.assert_allclose(loaded.vertices, mesh.vertices, atol=1e-6)
    np.testing.assert_allclose(loaded.visual.uv, mesh.visual.uv, atol=1e-6)
    material = loaded.visual.material
    np.testing.assert_array_equal(np.asarray(material.baseColorTexture), np.asarray(mesh.visual.material.baseColorTexture))
    np.testing.assert_array_equal(
        np.asarray(material.metallicRoughnessTexture), np.asarray(mesh.visual.material.metallicRoughnessTexture)
    )


def _decoded_images(data: bytes) -> list[np.ndarray]:
    gltf = pygltflib.GLTF2.load_from_bytes(data)
    blob = gltf.binary_blob()
    views = [gltf.bufferViews[image.bufferView] for image in gltf.images]
    return [np.asarray(Image.open(io.BytesIO(blob[v.byteOffset : v.byteOffset + v.byteLength])).convert("RGB"))
            for v in views]


def test_default_textures_are_jpeg_in_core_gltf_without_extensions(mesh):
    data = export_glb(mesh)
    gltf = pygltflib.GLTF2.load_from_bytes(data)
    assert [image.mimeType for image in gltf.images] == ["image/jpeg", "image/jpeg"]
    assert not gltf.extensionsUsed and not gltf.extensionsRequired
    assert all(texture.source is not None and not texture.extensions for texture in gltf.textures)


def _photo_texture(size: int) -> np.ndarray:
    """A base colour with photographic detail everywhere: four photos (skimage's bundled samples)
    tiled at half the texture size and upscaled 2x, like upscaled views baked into an atlas."""
    from skimage import data as samples

    half = size // 4
    tiles = [cv2.resize(image, (half, half), interpolation=cv2.INTER_AREA)
             for image in (samples.astronaut(), samples.coffee(), samples.chelsea(), samples.rocket())]
    quad = np.concatenate([np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)], axis=0)
    return cv2.resize(quad, (size, size), interpolation=cv2.INTER_CUBIC)


def test_default_glb_of_40k_faces_with_two_2048_textures_fits_2_mb_and_keeps_ssim(tmp_path):
    """The issue's budget: <= 2 MB, validator-clean, base-colour SSIM >= 0.98 against lossless."""
    from skimage.metrics import structural_similarity

    from hy3dcore.mesh import FaceReducer
    from hy3dpaint.export import pbr_mesh
    from hy3dpaint.uv import mesh_uv_wrap

    sphere = FaceReducer()(trimesh.creation.icosphere(6), 40_000)
    unwrapped = mesh_uv_wrap(sphere, texture_size=4096)
    assert len(unwrapped.faces) == 40_000
    size = 2048
    rows, cols = np.mgrid[0:size, 0:size] / size
    metallic = ((0.5 + 0.5 * np.tanh(40 * np.sin(7 * cols) * np.cos(5 * rows))) * 255).astype(np.uint8)
    roughness = ((0.4 + 0.3 * np.sin(9 * cols + 3 * rows)) * 255).astype(np.uint8)
    base_color = _photo_texture(size)
    textured = pbr_mesh(unwrapped.vertices, unwrapped.faces, unwrapped.visual.uv, base_color,
                        metallic=metallic, roughness=roughness)
    data = export_glb(textured)
    assert len(data) <= 2_000_000
    report = _validate(tmp_path, data)
    assert report["numErrors"] == 0 and report["numWarnings"] == 0, report["messages"]
    decoded_base, decoded_mr = _decoded_images(data)
    assert structural_similarity(base_color, decoded_base, channel_axis=2, data_range=255) >= 0.98
    lossless_mr = np.asarray(textured.visual.material.metallicRoughnessTexture)
    assert structural_similarity(lossless_mr, decoded_mr, channel_axis=2, data_range=255) >= 0.98


def _accessor(gltf: pygltflib.GLTF2, index: int, dtype, width: int) -> np.ndarray:
    accessor = gltf.accessors[index]
    view = gltf.bufferViews[accessor.bufferView]
    blob = gltf.binary_blob()
    stride = view.byteStride or np.dtype(dtype).itemsize * width
    raw = np.frombuffer(blob, np.uint8, count=stride * accessor.count, offset=view.byteOffset + (accessor.byteOffset or 0))
    rows = raw.reshape(accessor.count, stride)[:, : np.dtype(dtype).itemsize * width]
    return np.ascontiguousarray(rows).view(dtype).reshape(accessor.count, width)


def test_quantized_geometry_stays_within_one_quantization_step(mesh):
    data = export_glb(mesh, texture_format="jpeg", quantize=True)
    gltf = pygltflib.GLTF2.load_from_bytes(data)
    assert gltf.extensionsRequired == ["KHR_mesh_quantization"]
    attributes = gltf.meshes[0].primitives[0].attributes
    node = gltf.nodes[0]
    positions = _accessor(gltf, attributes.POSITION, np.uint16, 3) * np.asarray(node.scale) + np.asarray(node.translation)
    extent = np.ptp(mesh.vertices, axis=0).max()
    np.testing.assert_allclose(positions, mesh.vertices, rtol=0, atol=extent / 65535)
    texcoords = _accessor(gltf, attributes.TEXCOORD_0, np.uint16, 2) / 65535.0
    uv = np.stack([texcoords[:, 0], 1.0 - texcoords[:, 1]], axis=1)  # glTF t = 1 - v
    np.testing.assert_allclose(uv, mesh.visual.uv, rtol=0, atol=1.0 / 65535)
    # trimesh applies the node transform of quantized positions too.
    loaded = trimesh.load(io.BytesIO(data), file_type="glb").to_geometry()
    np.testing.assert_allclose(loaded.vertices, mesh.vertices, rtol=0, atol=extent / 65535 + 1e-6)


def test_webp_textures_use_ext_texture_webp(mesh):
    gltf = pygltflib.GLTF2.load_from_bytes(export_glb(mesh, texture_format="webp"))
    assert gltf.extensionsRequired == ["EXT_texture_webp"]
    assert [image.mimeType for image in gltf.images] == ["image/webp", "image/webp"]
    assert all("EXT_texture_webp" in texture.extensions for texture in gltf.textures)


def test_mr_layout_is_one_setting(monkeypatch, renderer, bake):
    arguments = (renderer.input_vertices(), renderer.pos_idx.numpy(), renderer.input_uv(), bake["inpainted_albedo_uint8"])
    mr = np.zeros((128, 128, 3), np.uint8)
    mr[..., 0], mr[..., 1], mr[..., 2] = 10, 120, 250
    monkeypatch.setenv(MR_LAYOUT_ENV, "gltf")
    packed = np.asarray(textured_mesh(*arguments, mr).visual.material.metallicRoughnessTexture)
    assert (packed[..., 1] == 120).all() and (packed[..., 2] == 250).all()
    monkeypatch.setenv(MR_LAYOUT_ENV, "reference")
    packed = np.asarray(textured_mesh(*arguments, mr).visual.material.metallicRoughnessTexture)
    assert (packed[..., 1] == 120).all() and (packed[..., 2] == 10).all()
    monkeypatch.setenv(MR_LAYOUT_ENV, "rgb")
    with pytest.raises(ValueError, match="HY3D_MR_LAYOUT='rgb'.*allowed: reference, gltf"):
        textured_mesh(*arguments, mr)


def test_bad_settings_are_rejected(mesh):
    with pytest.raises(ValueError, match="texture_format must be one of png, jpeg, webp"):
        export_glb(mesh, texture_format="gif")
    with pytest.raises(ValueError, match=r"quality must be an integer in \[1, 100\]"):
        export_glb(mesh, texture_format="jpeg", quality=101)
    with pytest.raises(ValueError, match="PNG textures are lossless"):
        export_glb(mesh, texture_format="png", quality=90)
    with pytest.raises(ValueError, match="empty mesh"):
        export_glb(trimesh.Trimesh())
