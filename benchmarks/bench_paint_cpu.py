"""Benchmark: the whole non-neural part of the texture stage on the CPU, baseline and ours side by side.

One process, one 40k-face marching-cubes mesh (``MCSurfaceExtractor`` on a bumpy body with a handle
and a knob, decimated with ``FaceReducer`` to ``--faces``: what the shape stage hands to the texture
stage), the neural stage's defaults (6 views, renders 2048, texture 4096). Parts:

1. **Whole non-neural part, timed in one run per side** (UV unwrap, view selection + condition
   renders, bake, inpaint of an albedo and an MR texture):

   * **baseline = upstream's algorithm at upstream's speed**: ``xatlas.parametrize`` (upstream's
     unwrap), the same renderer, upstream's bake structure (every view back-projected into full
     T x T images, all views re-merged after each one is added), the vertex propagation as a
     **numba-compiled copy of our per-vertex loop** (upstream compiles that loop in C++ with -O3;
     a pure-Python loop would not be a fair baseline), and OpenCV Navier-Stokes over the whole atlas;
   * **ours (default)**: ``mesh_uv_wrap()`` (charts) and ``bake_and_inpaint`` (each view's raster,
     visibility and sampling positions once for both materials; back-projection and merge on the
     texel table; ``inpaint_textures``: the vertex graph and passes and the far-fill plan once for
     both materials, the sparse-solve vertex propagation, and the fast NS: the atlas away from the
     charts filled first with the nearest painted colour (blurred farther out), NS on the charts
     and their gutter only).

   Both sides use the same renderer, texel table and back-projection code (whose kept view
   rasterizations serve both the condition renders and the bake; on the CPU their per-pixel and
   per-texel loops are numba-compiled, compiled for both sides before the timings), so only the bake
   structure, the unwrap and the inpainting differ.

   The view images stand in for the diffusion + super-resolution outputs (functions of the surface
   position, so all views agree: albedo = position colours with a pattern and soft stripes; MR = a
   metal cap with a sharp border and a smoothly varying roughness); making them is not timed.
   Quality column: ours run on the baseline's (xatlas) layout against the baseline's textures, on
   chart texels (max / mean absolute difference in 8-bit levels, share of differing texels, PSNR);
   ``inpaint_mode="reference"`` must give the baseline's textures exactly.
2. **UV layouts like for like** (xatlas vs charts, from the timed runs): time, utilisation, L2 and
   maximum stretch (Sander et al. 2001, ``hy3dpaint.uv_metrics``), spread of texel density across
   charts, chart count, seam length, texels claimed twice (must be 0). Goal: >= 10x faster than
   xatlas at utilisation >= xatlas's and L2 stretch <= 1.1x xatlas's.
3. **GLB size**: our two textures halved to 2048 (as the export does) on the unwrapped mesh, exported
   lossless (PNG), by default (``export_glb(mesh)``: JPEG) and in other variants; SSIM
   (``skimage.metrics.structural_similarity``, per channel, data range 255) of each decoded texture
   against the lossless one. Goal: the default <= 2 MB at SSIM >= 0.98.

Times are CPU time of the process (``time.process_time``) and wall time, best of ``--repeats``
interleaved runs (default 1: the baseline alone takes minutes at the defaults). Torch runs with
``--threads`` threads (default 1: this machine's 2 cores are shared). ``--texture-size`` and
``--render-size`` lower the sizes for a quick look. Writes ``benchmarks/results/paint_cpu.json``
and ``paint_cpu.md``.

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
import numba
import numpy as np
import torch
import trimesh
from PIL import Image
from skimage.metrics import structural_similarity

from hy3dcore.mesh import FaceReducer
from hy3dpaint.bake import back_project, bake_and_inpaint, texels_to_image
from hy3dpaint.export import export_glb, halve_texture, pbr_mesh
from hy3dpaint.inpaint import (
    INITIAL_PATIENCE,
    INPAINT_RADIUS,
    MAX_PASSES,
    _neighbour_graph,
    _seed,
    write_vertex_colors,
)
from hy3dpaint.render import MeshRenderer, to_uint8_image
from hy3dpaint.uv import count_overlapping_texels, mesh_uv_wrap, uv_utilisation
from hy3dpaint.uv_metrics import uv_quality
from hy3dpaint.view_selection import select_views
from hy3dshape.surface_extractors import MCSurfaceExtractor

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_FACES = 40_000
#: Marching-cubes grid of the input before decimation.
MC_RESOLUTION = 192
#: The neural stage's defaults.
TEXTURE_SIZE = 4096
RENDER_SIZE = 2048
VIEW_COUNT = 6
#: Texture size of the exported GLB (the export halves the atlas).
EXPORT_TEXTURE_SIZE = 2048
SIZE_GOAL_BYTES = 2_000_000  # 2 MB (decimal)
SSIM_GOAL = 0.98
SPEEDUP_GOAL = 5.0
UV_TIME_RATIO_GOAL = 0.1
UV_STRETCH_RATIO_GOAL = 1.1
COMPACT_VARIANTS = [
    {"texture_format": "jpeg", "quality": 95},
    {"texture_format": "webp", "quality": 95},
    {"texture_format": "webp", "quality": 90},
    {"texture_format": "jpeg", "quantize": True},
]
STAGES = ("uv", "renders", "bake_inpaint")


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


def timed(function: Callable) -> tuple[object, float, float]:
    """(result, CPU seconds, wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = function()
    return result, time.process_time() - cpu, time.perf_counter() - wall


# --------------------------------------------------------------------------------------------------
# Baseline pieces: upstream's structure and its compiled vertex loop
# --------------------------------------------------------------------------------------------------


@numba.njit(cache=False)
def _compiled_passes(colors, colored, pending, pointer, neighbour, weight, initial_patience, max_passes):  # pragma: no cover
    """A numba copy of ``hy3dpaint.inpaint._propagate_loop`` (same order of operations)."""
    channels = colors.shape[1]
    accumulated = np.zeros(channels)
    patience, previous, passes = initial_patience, 0, 0
    while patience > 0 and passes < max_passes:
        uncolored = 0
        for entry in range(pending.shape[0]):
            vertex = pending[entry]
            total = 0.0
            accumulated[:] = 0.0
            for edge in range(pointer[vertex], pointer[vertex + 1]):
                other = neighbour[edge]
                if colored[other]:
                    w = weight[edge]
                    for channel in range(channels):
                        accumulated[channel] += colors[other, channel] * w
                    total += w
            if total > 0:
                for channel in range(channels):
                    colors[vertex, channel] = accumulated[channel] / total
                colored[vertex] = True
            else:
                uncolored += 1
        patience = patience - 1 if uncolored == previous else patience + 1
        previous = uncolored
        passes += 1
    return passes


def compiled_vertex_inpaint(texture, mask, vertices, uv, faces) -> tuple[np.ndarray, np.ndarray]:
    """``vertex_inpaint`` with the per-vertex loop compiled (upstream's C++ stand-in)."""
    texture = np.asarray(texture, dtype=np.float32)
    seeds = _seed(texture, mask, len(vertices), uv, faces, faces)
    pointer, neighbour, weight = _neighbour_graph(vertices, faces)
    _compiled_passes(seeds.colors, seeds.colored, seeds.pending, pointer, neighbour, weight, INITIAL_PATIENCE, MAX_PASSES)
    return write_vertex_colors(texture, mask, seeds)


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


def baseline_bake_inpaint(renderer: MeshRenderer, faces: np.ndarray, images: dict, views: list) -> dict:
    vertices, uv = renderer.normalized_input_vertices(), renderer.input_uv()
    out = {}
    for name, material_images in images.items():
        texture, mask = reference_style_bake(renderer, material_images, views)
        texture, mask = compiled_vertex_inpaint(texture, mask, vertices, uv, faces)
        out[name] = cv2.inpaint((texture * 255).astype(np.uint8), 255 - mask, INPAINT_RADIUS, cv2.INPAINT_NS)
    return out


def ours_bake_inpaint(renderer: MeshRenderer, faces: np.ndarray, images: dict, views: list, mode: str = "fast") -> dict:
    """The product's bake + inpaint (``bake_and_inpaint``), in the given inpaint mode."""
    return bake_and_inpaint(renderer, images, views, faces, inpaint_mode=mode)


# --------------------------------------------------------------------------------------------------
# The whole non-neural part
# --------------------------------------------------------------------------------------------------


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


def condition_renders(renderer: MeshRenderer) -> tuple[list, list, list]:
    """View selection and the normal + position maps of the selected views (as the pipeline)."""
    views = select_views(renderer, VIEW_COUNT)
    normals, positions = [], []
    for view in views:
        normals.append(to_uint8_image(renderer.render_normal(view.elevation, view.azimuth)))
        positions.append(to_uint8_image(renderer.render_position(view.elevation, view.azimuth)))
    return views, normals, positions


def non_neural_part(mesh: trimesh.Trimesh, side: str, texture_size: int, render_size: int) -> dict:
    """Run one side end to end; returns stage times, the unwrapped mesh, renderer, views and textures."""
    times = {}
    method = "xatlas" if side == "baseline" else "charts"
    unwrapped, *times["uv"] = timed(lambda: mesh_uv_wrap(mesh, method, texture_size=texture_size))
    renderer = MeshRenderer.from_trimesh(unwrapped, texture_size=texture_size, render_size=render_size)
    (views, _normals, positions), *times["renders"] = timed(lambda: condition_renders(renderer))
    images = {"albedo": [albedo_stand_in(p) for p in positions], "mr": [mr_stand_in(p) for p in positions]}
    faces = np.asarray(unwrapped.faces)

    def bake_inpaint():
        _ = renderer.texels  # the texel table is part of the bake
        if side == "baseline":
            return baseline_bake_inpaint(renderer, faces, images, views)
        return ours_bake_inpaint(renderer, faces, images, views)

    textures, *times["bake_inpaint"] = timed(bake_inpaint)
    return {"times": times, "mesh": unwrapped, "renderer": renderer, "views": views, "images": images,
            "textures": textures}


def psnr(difference: np.ndarray) -> float:
    mse = float((difference.astype(np.float64) ** 2).mean())
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def bench_non_neural(mesh: trimesh.Trimesh, repeats: int, texture_size: int, render_size: int,
                     check_reference_mode: bool) -> tuple[dict, dict]:
    # Compile outside the timings: the baseline's vertex loop, and the numba loops both sides share
    # (rasterizer, back-projection, merge; the paint stage compiles them in its warm-up at load).
    _compiled_passes(np.zeros((1, 1)), np.zeros(1, np.bool_), np.zeros(0, np.int64), np.zeros(2, np.int64),
                     np.zeros(0, np.int64), np.zeros(0), INITIAL_PATIENCE, 1)
    non_neural_part(trimesh.creation.icosphere(subdivisions=2), "ours", 64, 64)
    best: dict[str, dict] = {}
    runs: dict[str, dict] = {}
    for _ in range(repeats):
        for side in ("baseline", "ours"):
            run = non_neural_part(mesh, side, texture_size, render_size)
            print(side, {stage: [round(v, 2) for v in value] for stage, value in run["times"].items()}, flush=True)
            runs[side] = run
            for stage, (cpu, wall) in run["times"].items():
                entry = best.setdefault(side, {}).setdefault(stage, {"cpu_s": float("inf"), "wall_s": float("inf")})
                entry["cpu_s"], entry["wall_s"] = min(entry["cpu_s"], cpu), min(entry["wall_s"], wall)
    report: dict = {"texture_size": texture_size, "render_size": render_size, "views": VIEW_COUNT}
    for side in ("baseline", "ours"):
        stages = best[side]
        stages["total"] = {key: sum(stages[stage][key] for stage in STAGES) for key in ("cpu_s", "wall_s")}
        report[side] = stages
    report["cpu_time_speedup"] = best["baseline"]["total"]["cpu_s"] / best["ours"]["total"]["cpu_s"]
    report["wall_time_speedup"] = best["baseline"]["total"]["wall_s"] / best["ours"]["total"]["wall_s"]
    report["bake_inpaint_cpu_time_speedup"] = (best["baseline"]["bake_inpaint"]["cpu_s"]
                                               / best["ours"]["bake_inpaint"]["cpu_s"])

    # Quality: ours on the baseline's layout against the baseline's textures, on chart texels.
    baseline = runs["baseline"]
    renderer, faces = baseline["renderer"], np.asarray(baseline["mesh"].faces)
    charts = renderer.texels.mask.cpu().numpy()
    fast = ours_bake_inpaint(renderer, faces, baseline["images"], baseline["views"])
    exact = (ours_bake_inpaint(renderer, faces, baseline["images"], baseline["views"], mode="reference")
             if check_reference_mode else None)
    for name in ("albedo", "mr"):
        difference = np.abs(fast[name].astype(int) - baseline["textures"][name].astype(int))[charts]
        report[f"{name}_chart_max_abs"] = int(difference.max())
        report[f"{name}_chart_mean_abs"] = float(difference.mean())
        report[f"{name}_chart_texels_differing"] = float((difference > 0).mean())
        report[f"{name}_chart_psnr_db"] = psnr(difference)
        report[f"{name}_reference_mode_identical"] = (None if exact is None
                                                      else bool(np.array_equal(exact[name], baseline["textures"][name])))
    report["goal_met"] = bool(report["cpu_time_speedup"] >= SPEEDUP_GOAL)
    return report, runs


def uv_report(runs: dict) -> dict:
    report = {}
    for side, method in (("baseline", "xatlas"), ("ours", "charts")):
        mesh = runs[side]["mesh"]
        uv, faces = np.asarray(mesh.visual.uv), np.asarray(mesh.faces)
        cpu, wall = runs[side]["times"]["uv"]
        report[method] = {
            "cpu_s": cpu, "wall_s": wall,
            "utilisation": uv_utilisation(uv, faces),
            **uv_quality(mesh.vertices, faces, uv).as_dict(),
            "vertices": len(mesh.vertices),
            "texels_claimed_twice_at_2048": count_overlapping_texels(uv, faces, 2048),
        }
    xatlas, charts = report["xatlas"], report["charts"]
    report["cpu_time_ratio"] = charts["cpu_s"] / xatlas["cpu_s"]
    report["wall_time_ratio"] = charts["wall_s"] / xatlas["wall_s"]
    report["l2_stretch_ratio"] = charts["l2_stretch"] / xatlas["l2_stretch"]
    report["goal_met"] = bool(
        report["cpu_time_ratio"] <= UV_TIME_RATIO_GOAL
        and charts["utilisation"] >= xatlas["utilisation"]
        and report["l2_stretch_ratio"] <= UV_STRETCH_RATIO_GOAL
        and charts["texels_claimed_twice_at_2048"] == 0
    )
    return report


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
    albedo, mr = textures["albedo"], textures["mr"]
    while albedo.shape[0] > EXPORT_TEXTURE_SIZE:
        albedo, mr = halve_texture(albedo), halve_texture(mr)
    textured = pbr_mesh(mesh.vertices, mesh.faces, mesh.visual.uv, albedo, metallic=mr[..., 0], roughness=mr[..., 1])
    lossless = export_glb(textured, texture_format="png")
    base, packed = decoded_textures(lossless)
    rows = [{"variant": "png (lossless)", "bytes": len(lossless), "ssim_base_color": 1.0, "ssim_metallic_roughness": 1.0}]
    for options in [{}, *COMPACT_VARIANTS]:
        data = export_glb(textured, **options)
        base_lossy, packed_lossy = decoded_textures(data)
        rows.append(
            {
                "variant": " ".join(f"{k}={v}" for k, v in options.items()) or "default (jpeg, quality 90)",
                "bytes": len(data),
                "ssim_base_color": float(structural_similarity(base, base_lossy, channel_axis=2, data_range=255)),
                "ssim_metallic_roughness": float(structural_similarity(packed, packed_lossy, channel_axis=2, data_range=255)),
            }
        )
    for row in rows:
        row["meets_goal"] = bool(
            row["bytes"] <= SIZE_GOAL_BYTES and min(row["ssim_base_color"], row["ssim_metallic_roughness"]) >= SSIM_GOAL
        )
    return {"faces": len(mesh.faces), "vertices": len(mesh.vertices), "texture_size": albedo.shape[0], "variants": rows}


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def markdown(results: dict) -> str:
    whole, uv, export = results["non_neural"], results["uv"], results["export"]
    lines = [
        "# Texture stage, non-neural part, on the CPU",
        "",
        f"Mesh: marching cubes at {results['mc_resolution']}, decimated to {results['faces']} faces. "
        f"{whole['views']} views, renders {whole['render_size']}^2, texture {whole['texture_size']}^2. "
        f"Torch threads: {results['torch_threads']}. Best of {results['repeats']} run(s) per side; CPU time of the "
        "process (the cores are shared) and wall time.",
        "",
        "## Whole non-neural part: UV + view selection and condition renders + bake + inpaint (albedo and MR)",
        "",
        "Baseline: upstream's algorithm at upstream's speed (xatlas; dense per-view bake re-merged after every "
        "view; vertex propagation numba-compiled, standing in for upstream's C++ -O3; Navier-Stokes over the "
        "whole atlas). Ours: the defaults.",
        "",
        "| side | UV CPU s | renders CPU s | bake + inpaint CPU s | total CPU s | total wall s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for side in ("baseline", "ours"):
        row = whole[side]
        lines.append(f"| {side} | {row['uv']['cpu_s']:.2f} | {row['renders']['cpu_s']:.2f} | "
                     f"{row['bake_inpaint']['cpu_s']:.2f} | {row['total']['cpu_s']:.2f} | {row['total']['wall_s']:.2f} |")
    identical = [whole[f"{name}_reference_mode_identical"] for name in ("albedo", "mr")]
    reference_check = (f"`inpaint_mode=\"reference\"` identical to the baseline: albedo {identical[0]}, MR {identical[1]}."
                       if None not in identical else
                       "`inpaint_mode=\"reference\"` was not rerun here (`--skip-reference-check`); the tests check it "
                       "bit for bit against the vectors.")
    lines += [
        "",
        f"Speed-up in CPU time (the measure: wall time depends on what the shared cores run meanwhile): "
        f"x{whole['cpu_time_speedup']:.1f}, wall x{whole['wall_time_speedup']:.1f} (bake + inpaint "
        f"alone: CPU x{whole['bake_inpaint_cpu_time_speedup']:.1f}); goal x{SPEEDUP_GOAL:.0f}: "
        f"{'met' if whole['goal_met'] else 'NOT met'}.",
        "",
        "Quality (ours on the baseline's layout vs the baseline, chart texels, 8-bit levels):",
        "",
        "| texture | max abs | mean abs | texels differing | PSNR dB |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in ("albedo", "mr"):
        lines.append(f"| {name} | {whole[f'{name}_chart_max_abs']} | {whole[f'{name}_chart_mean_abs']:.2g} | "
                     f"{100 * whole[f'{name}_chart_texels_differing']:.2g}% | {whole[f'{name}_chart_psnr_db']:.1f} |")
    lines += [
        "",
        reference_check,
        "",
        "## UV unwrap, like for like",
        "",
        "| method | CPU s | wall s | utilisation | L2 stretch | max stretch | density spread (CV) | density min / max "
        "| charts | seam length | degenerate faces | texels claimed twice (2048) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("xatlas", "charts"):
        row = uv[name]
        low, high = row["density_min_max"]
        lines.append(
            f"| {name} | {row['cpu_s']:.2f} | {row['wall_s']:.2f} | {row['utilisation']:.3f} | {row['l2_stretch']:.4f} | "
            f"{row['max_stretch']:.2f} | {row['density_spread']:.4f} | {low:.2f} / {high:.2f} | {row['charts']} | "
            f"{row['seam_length']:.2f} | {row['degenerate_faces']} | {row['texels_claimed_twice_at_2048']} |"
        )
    lines += [
        "",
        "Stretch is normalised so that an isometric layout scores 1 (max stretch over faces with a non-zero UV area); "
        "density is per chart, relative to the layout's mean; seam length is relative to sqrt(surface area).",
        "",
        f"Charts / xatlas: CPU time x{uv['cpu_time_ratio']:.3f}, wall x{uv['wall_time_ratio']:.3f}, L2 stretch "
        f"x{uv['l2_stretch_ratio']:.3f} (goal: time <= x{UV_TIME_RATIO_GOAL}, utilisation >= xatlas's, L2 stretch "
        f"<= x{UV_STRETCH_RATIO_GOAL}: {'met' if uv['goal_met'] else 'NOT met'}).",
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
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see the docstring)")
    parser.add_argument("--texture-size", type=int, default=TEXTURE_SIZE)
    parser.add_argument("--render-size", type=int, default=RENDER_SIZE)
    parser.add_argument("--skip-reference-check", action="store_true",
                        help="do not rerun ours with inpaint_mode='reference' (saves one full-atlas NS)")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    mesh = marching_cubes_mesh(MC_RESOLUTION, arguments.faces)
    print(f"mesh: {len(mesh.faces)} faces, {len(mesh.vertices)} vertices", flush=True)
    whole, runs = bench_non_neural(mesh, arguments.repeats, arguments.texture_size, arguments.render_size,
                                   not arguments.skip_reference_check)
    print(json.dumps(whole, indent=1), flush=True)
    uv = uv_report(runs)
    print(json.dumps(uv, indent=1), flush=True)
    export = bench_export(runs["ours"]["mesh"], runs["ours"]["textures"])
    print(json.dumps(export, indent=1), flush=True)
    results = {
        "faces": len(mesh.faces),
        "mc_resolution": MC_RESOLUTION,
        "repeats": arguments.repeats,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {name: version(name) for name in ("torch", "numpy", "numba", "opencv-python-headless", "xatlas",
                                                      "pillow")},
        "non_neural": whole,
        "uv": uv,
        "export": export,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "paint_cpu.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS_DIR / "paint_cpu.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
