"""Benchmark: the geometry half of the texture stage on the CPU, baseline and ours side by side.

One process, one 40k-face marching-cubes mesh (``MCSurfaceExtractor`` on a bumpy body with a handle
and a knob, decimated with ``FaceReducer`` to ``--faces``: what the shape stage hands to the texture
stage). Four parts:

1. **UV unwrap**: ``xatlas.parametrize`` (upstream, ``mesh_uv_wrap(method="xatlas")``) vs our
   ``mesh_uv_wrap()`` (charts). Time, utilisation (UV triangle area / unit square), charts and
   texels claimed twice at 2048 (``count_overlapping_texels``, must be 0). Target: our time <= 1/10
   of xatlas's at a utilisation >= xatlas's.
2. **Renders**: 6 views (the always-selected ones) at 2048 x 2048: face ids, normal and position maps.
3. **Bake + inpaint** a 2048 x 2048 albedo and MR texture from the 6 views, rendered by our
   renderer at 2048 (stand-ins for the diffusion + super-resolution outputs, functions of the surface
   position so that all views agree: albedo = position colours with a pattern and soft stripes; MR =
   a metal cap with a sharp border and a smoothly varying roughness):

   * **reference-style**: upstream's structure - every view back-projected into full T x T images,
     all views re-merged after each one is added (``bake_from_multiview``), the vertex propagation
     as a per-vertex loop (``vertex_inpaint(method="loop")``), NS over the whole atlas
     (``inpaint_texture(mode="reference")``);
   * **ours (default)**: ``bake_materials`` (each view's raster, visibility and sampling positions
     computed once for both materials; back-projection and merge on the texel table), the
     sparse-solve vertex propagation, the fast NS (far atlas filled by a distance transform, NS on
     charts + gutter).

   Also reported: ours with ``mode="reference"`` must give exactly the baseline's textures, and the
   fast mode's mean / max difference to them on chart texels.
4. **GLB size**: the two textures (2048 x 2048) on the unwrapped mesh, exported lossless (PNG) and in
   compact variants (JPEG / WebP at several qualities, with and without ``KHR_mesh_quantization``);
   SSIM (``skimage.metrics.structural_similarity``, per channel, data range 255) of each decoded
   texture against the lossless one. Goal: <= 2 MB at SSIM >= 0.98.

Times are the best of ``--repeats`` interleaved runs, in CPU time of the process
(``time.process_time``) and wall time. Torch runs with ``--threads`` threads (default 1: this machine's
2 cores are shared, and with 2 threads and a busy neighbour OpenMP's barriers multiply CPU time);
every part is single-threaded apart from torch. Writes ``benchmarks/results/paint_cpu.json`` and
``paint_cpu.md``.

    .venv/bin/python benchmarks/bench_paint_cpu.py
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import cv2
import numpy as np
import torch
import trimesh
from PIL import Image
from skimage.metrics import structural_similarity

from hy3dpaint.bake import back_project, bake_materials, bake_views, texels_to_image
from hy3dpaint.export import export_glb, pbr_mesh
from hy3dpaint.inpaint import inpaint_texture, vertex_inpaint
from hy3dpaint.render import MeshRenderer, to_uint8_image
from hy3dpaint.uv import count_overlapping_texels, mesh_uv_wrap, uv_utilisation
from hy3dpaint.view_selection import candidate_views
from hy3dshape.postprocessors import FaceReducer
from hy3dshape.surface_extractors import MCSurfaceExtractor

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_FACES = 40_000
#: Marching-cubes grid of the input before decimation.
MC_RESOLUTION = 192
TEXTURE_SIZE = 2048
RENDER_SIZE = 2048
VIEW_COUNT = 6
SIZE_GOAL_BYTES = 2_000_000  # 2 MB (decimal)
SSIM_GOAL = 0.98
UV_TIME_RATIO_GOAL = 0.1
COMPACT_VARIANTS = [
    {"texture_format": "jpeg", "quality": 95},
    {"texture_format": "jpeg", "quality": 90},
    {"texture_format": "webp", "quality": 95},
    {"texture_format": "webp", "quality": 90},
    {"texture_format": "jpeg", "quality": 90, "quantize": True},
    {"texture_format": "webp", "quality": 95, "quantize": True},
    {"texture_format": "webp", "quality": 90, "quantize": True},
]


def marching_cubes_mesh(resolution: int, faces: int) -> trimesh.Trimesh:
    """Bumpy body + handle (genus 1) + knob, extracted and decimated like the shape stage does."""
    axis = np.linspace(-1.01, 1.01, resolution + 1, dtype=np.float32)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    body = 0.55 - np.sqrt((x / 0.8) ** 2 + (y / 0.65) ** 2 + (z / 0.55) ** 2)
    body += 0.04 * np.sin(11 * x) * np.sin(9 * y) * np.sin(10 * z)
    handle = 0.09 - np.sqrt((np.sqrt(x**2 + (y - 0.05) ** 2) - 0.62) ** 2 + z**2)
    knob = 0.28 - np.sqrt((x - 0.55) ** 2 + (y - 0.55) ** 2 + (z - 0.1) ** 2)
    grid = np.maximum.reduce([body, handle, knob])
    vertices, triangles = MCSurfaceExtractor()(grid, 0.0, 1.01, resolution)[0]
    return FaceReducer()(trimesh.Trimesh(vertices, triangles), faces)


def timed(function: Callable, repeats: int) -> tuple[object, float, float]:
    """(result of the last run, best CPU seconds, best wall seconds)."""
    best_cpu, best_wall, result = float("inf"), float("inf"), None
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        result = function()
        best_cpu, best_wall = min(best_cpu, time.process_time() - cpu), min(best_wall, time.perf_counter() - wall)
    return result, best_cpu, best_wall


def interleaved(functions: dict[str, Callable], repeats: int) -> dict[str, tuple[object, float, float]]:
    """Run each function ``repeats`` times, alternating between them; keep each one's best times."""
    best = {name: (None, float("inf"), float("inf")) for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            result, cpu, wall = timed(function, 1)
            best[name] = (result, min(best[name][1], cpu), min(best[name][2], wall))
    return best


def chart_count(faces: np.ndarray) -> int:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    count = int(faces.max()) + 1
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count))
    return int(connected_components(graph, directed=False)[0])


# --------------------------------------------------------------------------------------------------
# Parts
# --------------------------------------------------------------------------------------------------


def bench_uv(mesh: trimesh.Trimesh, repeats: int) -> tuple[dict, trimesh.Trimesh]:
    runs = interleaved(
        {"xatlas": lambda: mesh_uv_wrap(mesh, method="xatlas"), "charts": lambda: mesh_uv_wrap(mesh)}, repeats
    )
    report = {}
    for name, (result, cpu, wall) in runs.items():
        report[name] = {
            "cpu_s": cpu,
            "wall_s": wall,
            "utilisation": uv_utilisation(result.visual.uv, result.faces),
            "vertices": len(result.vertices),
            "charts": chart_count(np.asarray(result.faces)),
            "texels_claimed_twice_at_2048": count_overlapping_texels(result.visual.uv, result.faces, 2048),
            "uv_min": float(np.min(result.visual.uv)),
            "uv_max": float(np.max(result.visual.uv)),
        }
    report["cpu_time_ratio"] = report["charts"]["cpu_s"] / report["xatlas"]["cpu_s"]
    report["wall_time_ratio"] = report["charts"]["wall_s"] / report["xatlas"]["wall_s"]
    report["goal_met"] = bool(
        report["cpu_time_ratio"] <= UV_TIME_RATIO_GOAL
        and report["charts"]["utilisation"] >= report["xatlas"]["utilisation"]
        and report["charts"]["texels_claimed_twice_at_2048"] == 0
    )
    return report, runs["charts"][0]


def albedo_stand_in(position_map: np.ndarray) -> np.ndarray:
    """Albedo view: the position colours with a view-independent surface pattern and soft stripes."""
    p = position_map.astype(np.float32) / 255.0
    pattern = 0.5 + 0.5 * np.sin(37 * p[..., 0]) * np.sin(29 * p[..., 1]) * np.sin(41 * p[..., 2])
    stripes = 0.5 + 0.5 * np.tanh(6 * np.sin(90 * (p[..., 0] + p[..., 2])))
    albedo = np.clip(0.55 * p + 0.3 * pattern[..., None] + 0.15 * stripes[..., None] * [1.0, 0.6, 0.2], 0, 1)
    albedo[(position_map == 255).all(axis=2)] = 1.0
    return (albedo * 255).astype(np.uint8)


def mr_stand_in(position_map: np.ndarray) -> np.ndarray:
    """MR view (layout "reference": R metallic, G roughness): a metal cap with a sharp border on a
    dielectric body, roughness varying smoothly."""
    p = position_map.astype(np.float32) / 255.0
    metallic = 0.05 + 0.8 * (0.5 + 0.5 * np.tanh((p[..., 2] - 0.62) * 100))
    roughness = 0.35 + 0.25 * np.sin(13 * p[..., 0]) * np.sin(11 * p[..., 1])
    mr = np.stack([metallic, roughness, np.full_like(metallic, 0.5)], axis=2)
    mr[(position_map == 255).all(axis=2)] = 1.0
    return (np.clip(mr, 0, 1) * 255).astype(np.uint8)


def bench_renders(renderer: MeshRenderer, repeats: int) -> tuple[dict, list, list]:
    views = candidate_views()[:VIEW_COUNT]

    def render_all():
        normals, positions = [], []
        for view in views:
            normals.append(to_uint8_image(renderer.render_normal(view.elevation, view.azimuth)))
            positions.append(to_uint8_image(renderer.render_position(view.elevation, view.azimuth)))
        return normals, positions

    _, cpu, wall = timed(lambda: [renderer.render_face_ids(v.elevation, v.azimuth) for v in views], repeats)
    (normals, positions), cpu_maps, wall_maps = timed(render_all, repeats)
    report = {
        "views": VIEW_COUNT,
        "resolution": RENDER_SIZE,
        "face_ids_cpu_s": cpu,
        "face_ids_wall_s": wall,
        "normal_and_position_maps_cpu_s": cpu_maps,
        "normal_and_position_maps_wall_s": wall_maps,
    }
    return report, [albedo_stand_in(p) for p in positions], [mr_stand_in(p) for p in positions]


def reference_style_bake(renderer: MeshRenderer, images: list, views: list) -> tuple[np.ndarray, np.ndarray]:
    """Upstream's structure: dense T x T per view, every view re-merged after each addition."""
    textures, weights = [], []
    merged = trust = None
    for image, view in zip(images, views):
        projection = back_project(renderer, image, view)
        textures.append(texels_to_image(renderer, projection.colors))
        weights.append(texels_to_image(renderer, view.weight * torch.pow(projection.cos, 4)))
        merged = torch.zeros_like(textures[0])
        trust = torch.zeros_like(weights[0])
        for texture, weight in zip(textures, weights):
            seen = weight > 0
            if seen.sum() and (seen & (trust > 0)).sum() / seen.sum() > 0.99:
                continue
            merged = merged + texture * weight.unsqueeze(-1)
            trust = trust + weight
    merged = merged / torch.clamp(trust, min=1e-8).unsqueeze(-1)
    return merged.numpy(), ((trust > 1e-8).to(torch.uint8) * 255).numpy()


def bench_bake_inpaint(renderer: MeshRenderer, mesh: trimesh.Trimesh, albedo_views, mr_views, repeats) -> tuple[dict, dict]:
    views = candidate_views()[:VIEW_COUNT]
    vertices = renderer.normalized_input_vertices()
    uv = renderer.input_uv()
    faces = np.asarray(mesh.faces)
    charts = renderer.texels.mask.numpy()

    def baseline():
        out = {}
        for name, images in (("albedo", albedo_views), ("mr", mr_views)):
            texture, mask = reference_style_bake(renderer, images, views)
            texture, mask = vertex_inpaint(texture, mask, vertices, uv, faces, method="loop")
            out[name] = cv2.inpaint((texture * 255).astype(np.uint8), 255 - mask, 3, cv2.INPAINT_NS)
        return out

    def ours():
        baked = bake_materials(renderer, {"albedo": albedo_views, "mr": mr_views}, views)
        return {
            name: inpaint_texture(texture, mask, vertices, uv, faces, chart_mask=charts)
            for name, (texture, mask) in baked.items()
        }

    def ours_reference_mode():
        out = {}
        for name, images in (("albedo", albedo_views), ("mr", mr_views)):
            texture, mask = bake_views(renderer, images, views)
            out[name] = inpaint_texture(texture, mask, vertices, uv, faces, mode="reference")
        return out

    _ = renderer.texels  # build the texel table outside the timings (both sides use it)
    runs = interleaved({"reference_style": baseline, "ours": ours}, repeats)
    exact = ours_reference_mode()
    report = {"texture_size": TEXTURE_SIZE, "views": VIEW_COUNT}
    for name, (_result, cpu, wall) in runs.items():
        report[name] = {"cpu_s": cpu, "wall_s": wall}
    report["cpu_time_speedup"] = report["reference_style"]["cpu_s"] / report["ours"]["cpu_s"]
    report["wall_time_speedup"] = report["reference_style"]["wall_s"] / report["ours"]["wall_s"]
    baseline_textures, fast_textures = runs["reference_style"][0], runs["ours"][0]
    for name in ("albedo", "mr"):
        difference = np.abs(fast_textures[name].astype(int) - baseline_textures[name].astype(int))[charts]
        report[f"{name}_reference_mode_identical"] = bool(np.array_equal(exact[name], baseline_textures[name]))
        report[f"{name}_fast_mode_chart_mean_abs"] = float(difference.mean())
        report[f"{name}_fast_mode_chart_max_abs"] = int(difference.max())
        report[f"{name}_fast_mode_chart_texels_differing"] = float((difference > 0).mean())
    return report, fast_textures


def decoded_textures(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Base colour and metallic-roughness images of a GLB written by ``export_glb``."""
    import pygltflib

    gltf = pygltflib.GLTF2.load_from_bytes(data)
    blob = gltf.binary_blob()
    images = []
    for image in gltf.images:
        view = gltf.bufferViews[image.bufferView]
        images.append(np.asarray(Image.open(io.BytesIO(blob[view.byteOffset : view.byteOffset + view.byteLength])).convert("RGB")))
    return images[0], images[1]


def bench_export(mesh: trimesh.Trimesh, textures: dict) -> dict:
    # MR as the model's layout "reference": metallic = R, roughness = G of the baked MR texture.
    mr = textures["mr"]
    textured = pbr_mesh(mesh.vertices, mesh.faces, mesh.visual.uv, textures["albedo"], metallic=mr[..., 0], roughness=mr[..., 1])
    lossless = export_glb(textured)
    base, packed = decoded_textures(lossless)
    rows = [{"variant": "png (lossless)", "bytes": len(lossless), "ssim_base_color": 1.0, "ssim_metallic_roughness": 1.0}]
    for options in COMPACT_VARIANTS:
        data = export_glb(textured, **options)
        base_lossy, packed_lossy = decoded_textures(data)
        rows.append(
            {
                "variant": " ".join(f"{k}={v}" for k, v in options.items()),
                "bytes": len(data),
                "ssim_base_color": float(structural_similarity(base, base_lossy, channel_axis=2, data_range=255)),
                "ssim_metallic_roughness": float(structural_similarity(packed, packed_lossy, channel_axis=2, data_range=255)),
            }
        )
    for row in rows:
        row["meets_goal"] = bool(
            row["bytes"] <= SIZE_GOAL_BYTES and min(row["ssim_base_color"], row["ssim_metallic_roughness"]) >= SSIM_GOAL
        )
    return {"faces": len(mesh.faces), "vertices": len(mesh.vertices), "texture_size": TEXTURE_SIZE, "variants": rows}


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def markdown(results: dict) -> str:
    uv, renders, bake, export = results["uv"], results["renders"], results["bake_inpaint"], results["export"]
    lines = [
        "# Texture stage, geometry half, on the CPU",
        "",
        f"Mesh: marching cubes at {results['mc_resolution']}, decimated to {results['faces']} faces. "
        f"Torch threads: {results['torch_threads']}. Best of {results['repeats']} interleaved runs; CPU time of the process "
        "(the cores are shared) and wall time.",
        "",
        "## UV unwrap",
        "",
        "| method | CPU s | wall s | utilisation | charts | vertices | texels claimed twice (2048) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("xatlas", "charts"):
        row = uv[name]
        lines.append(
            f"| {name} | {row['cpu_s']:.2f} | {row['wall_s']:.2f} | {row['utilisation']:.3f} | {row['charts']} | "
            f"{row['vertices']} | {row['texels_claimed_twice_at_2048']} |"
        )
    lines += [
        "",
        f"Time ratio charts / xatlas: CPU {uv['cpu_time_ratio']:.3f}, wall {uv['wall_time_ratio']:.3f} "
        f"(goal <= {UV_TIME_RATIO_GOAL} at utilisation >= xatlas's: {'met' if uv['goal_met'] else 'NOT met'}).",
        "",
        "## Renders",
        "",
        f"{renders['views']} views at {renders['resolution']}^2: face ids {renders['face_ids_cpu_s']:.2f} s CPU "
        f"({renders['face_ids_wall_s']:.2f} s wall); normal + position maps {renders['normal_and_position_maps_cpu_s']:.2f} s CPU "
        f"({renders['normal_and_position_maps_wall_s']:.2f} s wall).",
        "",
        "## Bake + inpaint (albedo and MR, 2048^2, 6 views)",
        "",
        "| run | CPU s | wall s |",
        "| --- | --- | --- |",
        f"| reference-style | {bake['reference_style']['cpu_s']:.2f} | {bake['reference_style']['wall_s']:.2f} |",
        f"| ours (default) | {bake['ours']['cpu_s']:.2f} | {bake['ours']['wall_s']:.2f} |",
        "",
        f"Speed-up: CPU x{bake['cpu_time_speedup']:.1f}, wall x{bake['wall_time_speedup']:.1f}. "
        f"`mode=\"reference\"` identical to the baseline: albedo {bake['albedo_reference_mode_identical']}, "
        f"MR {bake['mr_reference_mode_identical']}. Fast mode vs baseline on chart texels: albedo mean "
        f"{bake['albedo_fast_mode_chart_mean_abs']:.3f} / max {bake['albedo_fast_mode_chart_max_abs']} levels "
        f"({100 * bake['albedo_fast_mode_chart_texels_differing']:.2f}% differ), MR mean "
        f"{bake['mr_fast_mode_chart_mean_abs']:.3f} / max {bake['mr_fast_mode_chart_max_abs']} "
        f"({100 * bake['mr_fast_mode_chart_texels_differing']:.2f}% differ).",
        "",
        f"## GLB size ({export['faces']} faces, two {export['texture_size']}^2 textures)",
        "",
        "| variant | MB | SSIM base colour | SSIM metallic-roughness | <= 2 MB at SSIM >= 0.98 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in export["variants"]:
        lines.append(
            f"| {row['variant']} | {row['bytes'] / 1e6:.2f} | {row['ssim_base_color']:.4f} | "
            f"{row['ssim_metallic_roughness']:.4f} | {'yes' if row['meets_goal'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces", type=int, default=DEFAULT_FACES)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see the docstring)")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    mesh = marching_cubes_mesh(MC_RESOLUTION, arguments.faces)
    print(f"mesh: {len(mesh.faces)} faces, {len(mesh.vertices)} vertices", flush=True)
    uv_report, unwrapped = bench_uv(mesh, arguments.repeats)
    print(json.dumps(uv_report, indent=1), flush=True)
    renderer = MeshRenderer.from_trimesh(unwrapped, texture_size=TEXTURE_SIZE, render_size=RENDER_SIZE)
    render_report, albedo_views, mr_views = bench_renders(renderer, arguments.repeats)
    print(json.dumps(render_report, indent=1), flush=True)
    bake_report, textures = bench_bake_inpaint(renderer, unwrapped, albedo_views, mr_views, arguments.repeats)
    print(json.dumps(bake_report, indent=1), flush=True)
    export_report = bench_export(unwrapped, textures)
    print(json.dumps(export_report, indent=1), flush=True)
    results = {
        "faces": len(mesh.faces),
        "mc_resolution": MC_RESOLUTION,
        "repeats": arguments.repeats,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {name: version(name) for name in ("torch", "numpy", "opencv-python-headless", "xatlas", "pillow")},
        "uv": uv_report,
        "renders": render_report,
        "bake_inpaint": bake_report,
        "export": export_report,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "paint_cpu.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS_DIR / "paint_cpu.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
