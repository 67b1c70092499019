"""Back-projection of view images onto the UV atlas and their weighted merge (FACTS §9).

Per view (``back_project``): the mesh is rasterized at the image's resolution; pixels whose face
turns more than ``MAX_VIEW_ANGLE_DEG`` away from the camera, pixels near depth discontinuities
(Canny edges of the depth image, dilated) and pixels near the silhouette (eroded visibility) are
unreliable. Every covered texel is projected into the image (``back_sample``): it takes the
bilinear colour at its pixel when its depth matches the rendered depth within ``DEPTH_TOLERANCE``
and the pixel is reliable; its weight is the cosine between the face normal and the view direction.

Merge (``merge_views``): weight ``view_weight * cos ** BAKE_EXPONENT``; views are visited in order
and a view is skipped when more than ``SKIP_IF_PAINTED_FRACTION`` of its texels are already painted;
``texture = sum(w * colour) / max(sum(w), 1e-8)``, painted where ``sum(w) > 1e-8``.

Everything is computed on the texel table (``K`` covered texels), not on full ``T x T`` images, and
runs on the renderer's device. A view's geometry (``ViewSampling``: raster, visibility, sampling
positions, weights) does not depend on the image, so ``bake_materials`` computes it once per view
for all materials (albedo and MR).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from hy3dpaint.progress import PHASE_BAKE, ProgressCallback, report
from hy3dpaint.render.mesh_renderer import MeshRenderer
from hy3dpaint.render.rasterizer import interpolate, uses_cpu_kernels
from hy3dpaint.view_selection import SELECTION_RENDER_SIZE, View, boundary_kernel_size

logger = logging.getLogger(__name__)

#: Faces turned further than this from the camera get weight 0.
MAX_VIEW_ANGLE_DEG = 75.0
#: A texel is seen by a view when its camera depth is within this of the rendered depth (camera units).
DEPTH_TOLERANCE = 3e-3
#: Exponent of the cosine in the merge weight ``view_weight * cos ** BAKE_EXPONENT``.
BAKE_EXPONENT = 4
#: Half-size of the box that widens depth edges and erodes the silhouette. The reference's view
#: selection leaves the value for its 1024 px renders in place (FACTS §12.4), so baking uses 4.
BOUNDARY_KERNEL = boundary_kernel_size(SELECTION_RENDER_SIZE)
#: Canny thresholds on the 8-bit normalised depth image.
CANNY_LOW, CANNY_HIGH = 30, 80
#: A view is skipped when more than this fraction of the texels it sees are already painted.
SKIP_IF_PAINTED_FRACTION = 0.99
#: Merged texels with total weight at or below this are unpainted.
MIN_TOTAL_WEIGHT = 1e-8
#: Texels projected into a view at once (bounds the temporaries of the back-projection).
TEXELS_PER_CHUNK = 1 << 18


@dataclass
class ViewProjection:
    """One view projected onto the texel table (``K`` entries, see ``render.texels``).

    ``colors``: float32 ``[K, C]`` (0 where not seen); ``cos``: float32 ``[K]``, the cosine weight
    (0 where not seen).
    """

    colors: torch.Tensor
    cos: torch.Tensor


def image_to_tensor(image, device: torch.device) -> torch.Tensor:
    """PIL image, uint8 array (scaled by 1/255) or float array/tensor -> float32 ``[H, W, C]``."""
    if isinstance(image, torch.Tensor):
        tensor = image.to(device=device, dtype=torch.float32)
    else:
        array = np.ascontiguousarray(np.asarray(image))
        if not array.flags.writeable:  # PIL's buffer: torch wants memory it may own
            array = array.copy()
        if array.dtype == np.uint8:
            # float32(v / 255) equals float32(v) / 255 in float32 for all 256 values (checked in the
            # tests), so the uint8 image moves to the device as is and is scaled there.
            tensor = torch.from_numpy(array).to(device).to(torch.float32) / 255
        else:
            tensor = torch.from_numpy(array).to(device=device, dtype=torch.float32)
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(-1)
    if tensor.ndim != 3:
        raise ValueError(f"view image must be [H, W] or [H, W, C], got shape {list(tensor.shape)}")
    return tensor


def reliable_pixels(face_ids: torch.Tensor, depth: torch.Tensor, kernel: int) -> torch.Tensor:
    """Bool ``[H, W]``: visible pixels away from depth edges and from the silhouette.

    Depth edges are Canny edges of the visible depth normalised to [0, 1] and truncated to 8 bits,
    dilated with a ``(2 kernel + 1)^2`` box; the visibility mask is eroded with the same box (the
    outside of the image counts as visible, as a zero-padded convolution of the complement would).
    OpenCV on the CPU; on other devices the same bits in torch (``hy3dpaint.edges``), on the device.
    """
    if face_ids.device.type != "cpu":
        return _reliable_pixels_torch(face_ids, depth, kernel)
    visible = (face_ids > 0).cpu().numpy()
    if not visible.any():
        return torch.zeros_like(face_ids, dtype=torch.bool)
    depth_np = depth.cpu().numpy()
    shown = depth_np[visible]
    depth_min, depth_max = shown.min(), shown.max()
    normalized = (depth_np - depth_min) / (depth_max - depth_min) * visible
    edges = cv2.Canny((normalized * 255).astype(np.uint8), CANNY_LOW, CANNY_HIGH)
    if kernel > 0:
        box = np.ones((2 * kernel + 1, 2 * kernel + 1), np.uint8)
        edges = cv2.dilate(edges, box)
        visible = cv2.erode(visible.astype(np.uint8), box, borderType=cv2.BORDER_CONSTANT, borderValue=1) > 0
    reliable = visible & (edges == 0)
    return torch.from_numpy(reliable).to(face_ids.device)


def _reliable_pixels_torch(face_ids: torch.Tensor, depth: torch.Tensor, kernel: int) -> torch.Tensor:
    """:func:`reliable_pixels` in torch on the tensors' device (same bits as the OpenCV path)."""
    from hy3dpaint.edges import canny, dilate_box, erode_box

    visible = face_ids > 0
    if not bool(visible.any()):
        return torch.zeros_like(face_ids, dtype=torch.bool)
    shown = depth[visible]
    depth_min, depth_max = shown.min(), shown.max()
    normalized = (depth - depth_min) / (depth_max - depth_min) * visible
    edges = canny((normalized * 255).to(torch.uint8), CANNY_LOW, CANNY_HIGH)
    edges = dilate_box(edges, kernel)
    visible = erode_box(visible, kernel)
    return visible & ~edges


@dataclass
class ViewSampling:
    """Where a view's image is sampled for each texel the view paints (geometry only, no colours).

    ``texels``: int64 ``[M]`` texel-table indices; ``corners``: int64 ``[M, 4]`` flat pixel indices
    (x0y0, x1y0, x0y1, x1y1); ``wx``, ``wy``: float32 ``[M, 1]`` bilinear fractions; ``cos``: float32
    ``[M]``; ``resolution``: the image side it was computed for; ``texel_count``: K.
    """

    texels: torch.Tensor
    corners: torch.Tensor
    wx: torch.Tensor
    wy: torch.Tensor
    cos: torch.Tensor
    resolution: int
    texel_count: int

    def sample(self, pixels: torch.Tensor) -> torch.Tensor:
        """Bilinear colours ``[M, C]`` of an image ``[R, R, C]`` (float32) at the seen texels."""
        height, width, channels = pixels.shape
        if (height, width) != (self.resolution, self.resolution):
            raise ValueError(f"image is {width}x{height}; this sampling was computed for {self.resolution}^2")
        return _bilinear(pixels.reshape(-1, channels), self.corners, self.wx, self.wy)

    def project(self, pixels: torch.Tensor) -> ViewProjection:
        """Sample an image ``[R, R, C]`` (float32) into a :class:`ViewProjection`."""
        channels = pixels.shape[2]
        colors = torch.zeros((self.texel_count, channels), dtype=torch.float32, device=pixels.device)
        colors[self.texels] = self.sample(pixels)
        cos = torch.zeros(self.texel_count, dtype=torch.float32, device=pixels.device)
        cos[self.texels] = self.cos
        return ViewProjection(colors=colors, cos=cos)


def _bilinear(flat: torch.Tensor, corners: torch.Tensor, wx: torch.Tensor, wy: torch.Tensor) -> torch.Tensor:
    """Bilinear colours ``[M, C]`` from a flat image ``[R * R, C]`` at corner indices ``[M, 4]``."""

    def corner(k: int) -> torch.Tensor:
        return flat.index_select(0, corners[:, k])

    top = corner(0) * (1 - wx) + corner(1) * wx
    bottom = corner(2) * (1 - wx) + corner(3) * wx
    return top * (1 - wy) + bottom * wy


def view_sampling(
    renderer: MeshRenderer, view: View | tuple[float, float], resolution: int, *, boundary_kernel: int = BOUNDARY_KERNEL
) -> ViewSampling:
    """Rasterize a view at ``resolution`` and find, for every texel, whether and where it is seen."""
    elevation, azimuth = (view.elevation, view.azimuth) if isinstance(view, View) else view
    camera, _clip = renderer.camera_and_clip_positions(elevation, azimuth)
    camera = camera[:, :3] / camera[:, 3:4]
    raster = renderer.rasterize_view(elevation, azimuth, resolution)  # cached from the condition renders
    corners = camera[renderer.pos_idx]
    normals = F.normalize(torch.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=-1), dim=-1)
    look = torch.tensor([[0.0, 0.0, -1.0]], device=renderer.device)
    # Per face, then gathered per pixel: the same numbers as per pixel, F instead of R^2 evaluations.
    face_cos = F.cosine_similarity(normals, look)
    face_cos = torch.where(face_cos < float(np.cos(MAX_VIEW_ANGLE_DEG / 180 * np.pi)), torch.zeros_like(face_cos), face_cos)
    face = (raster.face_ids.to(torch.int64) - 1).clamp_min(0)
    depth = interpolate(camera[:, 2:3].contiguous(), raster, renderer.pos_idx)[..., 0]
    reliable = reliable_pixels(raster.face_ids, depth, boundary_kernel)
    cos = torch.where(reliable, face_cos[face], torch.zeros_like(depth))
    return _back_sample(renderer, resolution, depth, reliable, cos, elevation, azimuth)


def back_project(
    renderer: MeshRenderer, image, view: View | tuple[float, float], *, boundary_kernel: int = BOUNDARY_KERNEL
) -> ViewProjection:
    """Project one view image onto the texel table of ``renderer``.

    ``image``: PIL image, uint8 ``[H, W(, C)]`` (divided by 255) or float ``[H, W(, C)]`` in [0, 1];
    it is back-projected at its own resolution (square). ``view``: a :class:`View` or (elevation, azimuth).
    """
    pixels = _square_image(image, renderer.device)
    return view_sampling(renderer, view, pixels.shape[0], boundary_kernel=boundary_kernel).project(pixels)


def _square_image(image, device) -> torch.Tensor:
    pixels = image_to_tensor(image, device)
    if pixels.shape[0] != pixels.shape[1]:
        raise ValueError(f"view images must be square, got {pixels.shape[1]}x{pixels.shape[0]}")
    return pixels


def _back_sample(renderer, resolution, depth, reliable, cos, elevation, azimuth) -> ViewSampling:
    """For every texel: project, test depth and reliability; keep bilinear sampling positions.

    The image projection is diagonal (``diag(P00, P11, 1, 1)``), so it is applied as two products:
    the same single rounding per coordinate as the matrix product. Pixels that cannot paint
    (unreliable, or weight 0) carry a NaN depth, so one gather per texel decides both tests.
    """
    height = width = resolution
    texels = renderer.texels.positions
    projection = renderer.projection
    view = renderer.view_matrix(elevation, azimuth).t()
    on_cpu = texels.device.type == "cpu"
    if not on_cpu:
        view = view.double()
    weights = cos.reshape(-1)
    usable_depth = torch.where(reliable.reshape(-1) & (weights > 0), depth.reshape(-1), float("nan"))
    p00, p11 = projection[0, 0], projection[1, 1]
    if uses_cpu_kernels(texels.device):
        return _back_sample_cpu(texels, view, p00, p11, width, height, usable_depth, weights, resolution)
    parts: list[tuple[torch.Tensor, ...]] = []
    # Elementwise per texel, so processing the table in chunks gives the same numbers; chunks keep
    # the temporaries small (cache-resident, no fresh pages for every intermediate).
    for begin in range(0, texels.shape[0], TEXELS_PER_CHUNK):
        rows = texels[begin : begin + TEXELS_PER_CHUNK]
        if on_cpu:  # float32 products, as the reference (each row's product does not depend on the chunk)
            chunk = (rows @ view)[:, :3]
        else:  # float64 then rounded: immune to a global TF32 setting
            chunk = (rows.double() @ view).float()[:, :3]
        x = chunk[:, 0] * p00
        y = chunk[:, 1] * p11
        inside = (x.abs() <= 1.0) & (y.abs() <= 1.0)
        fx = (x.clamp(-1, 1) * 0.5 + 0.5) * width
        fy = (y.clamp(-1, 1) * 0.5 + 0.5) * height
        ix = fx.to(torch.int32).clamp_(0, width - 1)
        iy = fy.to(torch.int32).clamp_(0, height - 1)
        pixel = iy * width + ix
        seen = inside & ((chunk[:, 2] - usable_depth.index_select(0, pixel)).abs() < DEPTH_TOLERANCE)
        local = torch.nonzero(seen).squeeze(1)
        parts.append((local + begin, ix.index_select(0, local), iy.index_select(0, local), fx.index_select(0, local),
                      fy.index_select(0, local), pixel.index_select(0, local)))
    if not parts:
        parts.append(tuple(torch.zeros(0, dtype=dtype, device=texels.device)
                           for dtype in (torch.int64, torch.int32, torch.int32, torch.float32, torch.float32, torch.int32)))
    index, ix, iy, fx, fy, pixel = (torch.cat(values) for values in zip(*parts))
    return _sampling(index, ix, iy, fx, fy, pixel, weights, width, height, resolution, texels.shape[0])


def _back_sample_cpu(texels, view, p00, p11, width, height, usable_depth, weights, resolution) -> ViewSampling:
    """:func:`_back_sample`'s per-texel tests as one compiled loop per chunk (``bake_kernels``)."""
    from hy3dpaint import bake_kernels

    depth = usable_depth.contiguous().numpy()
    parts: list[tuple[np.ndarray, ...]] = []
    for begin in range(0, texels.shape[0], TEXELS_PER_CHUNK):
        camera = (texels[begin : begin + TEXELS_PER_CHUNK] @ view).numpy()  # float32, as the torch path
        size = camera.shape[0]
        outputs = (np.empty(size, np.int64), np.empty(size, np.int32), np.empty(size, np.float32),
                   np.empty(size, np.float32))
        count = bake_kernels.seen_texels(camera, begin, np.float32(p00), np.float32(p11), width, height, depth,
                                         np.float32(DEPTH_TOLERANCE), *outputs)
        parts.append(tuple(array[:count] for array in outputs))
    index, pixel, fx, fy = (torch.from_numpy(np.concatenate(values)) for values in zip(*parts))
    ix = fx.to(torch.int32).clamp_(0, width - 1)
    iy = fy.to(torch.int32).clamp_(0, height - 1)
    return _sampling(index, ix, iy, fx, fy, pixel, weights, width, height, resolution, texels.shape[0])


def _sampling(index, ix, iy, fx, fy, pixel, weights, width, height, resolution, texel_count) -> ViewSampling:
    x0, y0 = ix.long(), iy.long()
    x1, y1 = (x0 + 1).clamp(max=width - 1), (y0 + 1).clamp(max=height - 1)
    corners = torch.stack([y0 * width + x0, y0 * width + x1, y1 * width + x0, y1 * width + x1], dim=1)
    return ViewSampling(
        texels=index,
        corners=corners,
        wx=(fx - x0).unsqueeze(1),
        wy=(fy - y0).unsqueeze(1),
        cos=weights.index_select(0, pixel),
        resolution=resolution,
        texel_count=texel_count,
    )


def merge_views(
    projections: Sequence[ViewProjection], weights: Sequence[float], *, exponent: float = BAKE_EXPONENT
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted merge of view projections: (colors ``[K, C]``, painted bool ``[K]``)."""
    if len(projections) != len(weights) or not projections:
        raise ValueError(f"need one weight per projection, got {len(projections)} projections, {len(weights)} weights")
    merged = torch.zeros_like(projections[0].colors)
    trust = torch.zeros_like(projections[0].cos)
    for index, (projection, view_weight) in enumerate(zip(projections, weights)):
        weight = view_weight * torch.pow(projection.cos, exponent)
        seen = weight > 0
        seen_count = int(seen.sum())
        painted = int((seen & (trust > 0)).sum())
        if seen_count and painted / seen_count > SKIP_IF_PAINTED_FRACTION:
            logger.debug("view %d skipped: %d of its %d texels already painted", index, painted, seen_count)
            continue
        merged = merged + projection.colors * weight.unsqueeze(1)
        trust = trust + weight
    merged = merged / torch.clamp(trust, min=MIN_TOTAL_WEIGHT).unsqueeze(1)
    return merged, trust > MIN_TOTAL_WEIGHT


def texels_to_image(renderer: MeshRenderer, values: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """Scatter per-texel values ``[K, ...]`` into a ``[T, T, ...]`` image (``fill`` elsewhere)."""
    size = renderer.texels.size
    image = torch.full((size * size, *values.shape[1:]), fill, dtype=values.dtype, device=values.device)
    image[renderer.texels.pixels] = values
    return image.view(size, size, *values.shape[1:])


def bake_materials(
    renderer: MeshRenderer,
    images: Mapping[str, Sequence],
    views: Sequence[View],
    *,
    exponent: float = BAKE_EXPONENT,
    boundary_kernel: int = BOUNDARY_KERNEL,
    keep_on_device: bool = False,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Bake several materials seen from the same views (e.g. ``{"albedo": [...], "mr": [...]}``).

    ``images[name][i]`` is material ``name`` seen from ``views[i]``. Each view's geometry (raster,
    visibility, sampling positions) is computed once and used for every material. Returns
    ``{name: (texture float32 [T, T, C], mask uint8 [T, T] 0/255)}``, the same as :func:`bake_views`
    per material: NumPy arrays, or tensors on the renderer's device with ``keep_on_device``.
    """
    for name, material_images in images.items():
        if len(material_images) != len(views):
            raise ValueError(f"need one image per view, got {len(material_images)} {name} images for {len(views)} views")
    # All materials share each view's sampling positions and weights, so they are sampled and merged
    # together as one multi-channel image (per-channel arithmetic unchanged, one gather per corner).
    view_weights = [view.weight for view in views]
    names = list(images)
    merge: _SparseMerge | None = None
    channels: list[int] = []
    for index, view in enumerate(views):
        pixels = [_square_image(images[name][index], renderer.device) for name in names]
        sizes = {tuple(tensor.shape[:2]) for tensor in pixels}
        if len(sizes) != 1:
            raise ValueError(f"the images of view {index} differ in size: {sorted(sizes)}")
        channels = [tensor.shape[2] for tensor in pixels]
        stacked = pixels[0] if len(pixels) == 1 else torch.cat(pixels, dim=2)
        sampling = view_sampling(renderer, view, next(iter(sizes))[0], boundary_kernel=boundary_kernel)
        if merge is None:
            merge = _SparseMerge(sampling.texel_count, stacked.shape[2], stacked.device)
        elif merge.merged.shape[1] != stacked.shape[2]:
            raise ValueError(f"the images of view {index} have {channels} channels, unlike the first view's")
        merge.add(sampling, stacked, view_weights[index], exponent, index)
    if merge is None:
        raise ValueError("need at least one view and one material to bake")
    colors, painted = merge.result()
    mask = texels_to_image(renderer, painted.to(torch.uint8) * 255)
    result = {}
    for name, part in zip(names, colors.split(channels, dim=1)):
        texture = texels_to_image(renderer, part.contiguous())
        result[name] = (texture, mask.clone()) if keep_on_device else (texture.cpu().numpy(), mask.cpu().numpy().copy())
    return result


class _SparseMerge:
    """:func:`merge_views` accumulated view by view on the texels each view sees only.

    Same numbers as ``merge_views`` on the full projections: a texel a view does not see would add
    ``0 * 0`` there, which leaves every sum unchanged.
    """

    def __init__(self, texel_count: int, channels: int, device: torch.device) -> None:
        self.merged = torch.zeros((texel_count, channels), dtype=torch.float32, device=device)
        self.trust = torch.zeros(texel_count, dtype=torch.float32, device=device)

    def add(self, sampling: ViewSampling, pixels: torch.Tensor, view_weight: float, exponent: float, index: int) -> None:
        weight = view_weight * torch.pow(sampling.cos, exponent)
        seen = weight > 0
        seen_count = int(seen.sum())
        painted = int((seen & (self.trust.index_select(0, sampling.texels) > 0)).sum())
        if seen_count and painted / seen_count > SKIP_IF_PAINTED_FRACTION:
            logger.debug("view %d skipped: %d of its %d texels already painted", index, painted, seen_count)
            return
        if pixels.shape[:2] != (sampling.resolution, sampling.resolution):
            raise ValueError(f"image is {pixels.shape[1]}x{pixels.shape[0]}; this sampling was computed for "
                             f"{sampling.resolution}^2")
        flat = pixels.reshape(-1, pixels.shape[2])
        if uses_cpu_kernels(flat.device):
            from hy3dpaint import bake_kernels

            bake_kernels.accumulate(self.merged.numpy(), self.trust.numpy(), flat.contiguous().numpy(),
                                    sampling.texels.numpy(), sampling.corners.numpy(), sampling.wx.numpy(),
                                    sampling.wy.numpy(), weight.contiguous().numpy())
            return
        # A view sees each texel once, so the update runs chunk by chunk (same numbers, small temporaries).
        for begin in range(0, sampling.texels.shape[0], TEXELS_PER_CHUNK):
            part = slice(begin, begin + TEXELS_PER_CHUNK)
            texels, chunk_weight = sampling.texels[part], weight[part]
            colors = _bilinear(flat, sampling.corners[part], sampling.wx[part], sampling.wy[part])
            self.merged.index_copy_(0, texels, self.merged.index_select(0, texels) + colors * chunk_weight.unsqueeze(1))
            self.trust.index_copy_(0, texels, self.trust.index_select(0, texels) + chunk_weight)

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        merged = self.merged / torch.clamp(self.trust, min=MIN_TOTAL_WEIGHT).unsqueeze(1)
        return merged, self.trust > MIN_TOTAL_WEIGHT


def bake_views(
    renderer: MeshRenderer,
    images: Sequence,
    views: Sequence[View],
    *,
    exponent: float = BAKE_EXPONENT,
    boundary_kernel: int = BOUNDARY_KERNEL,
) -> tuple[np.ndarray, np.ndarray]:
    """Bake view images into the atlas: (texture float32 ``[T, T, C]``, mask uint8 ``[T, T]`` 0/255).

    ``images[i]`` is the image seen from ``views[i]``; weights are the views' weights.
    """
    if len(images) != len(views):
        raise ValueError(f"need one image per view, got {len(images)} images for {len(views)} views")
    return bake_materials(renderer, {"texture": images}, views, exponent=exponent, boundary_kernel=boundary_kernel)["texture"]


def bake_and_inpaint(
    renderer: MeshRenderer,
    images: Mapping[str, Sequence],
    views: Sequence[View],
    faces: np.ndarray,
    *,
    inpaint_mode: str = "fast",
    callback: ProgressCallback | None = None,
) -> dict[str, np.ndarray]:
    """Bake every material (``bake_materials``) and fill its unpainted texels (``inpaint_textures``:
    the materials share the bake's mask, so the inpainting's mask-only work is done once).

    ``faces`` index the renderer's (seam-split) vertices. Returns ``{name: uint8 [T, T, C]}``; both
    texture engines (neural and built-in) finish their textures with this. Reports ``paint:bake``
    after the bake and after each material's inpainting (``1 + len(images)`` steps).
    """
    from hy3dpaint.inpaint import inpaint_textures

    vertices, uv = renderer.normalized_input_vertices(), renderer.input_uv()
    on_device = renderer.device.type != "cpu"  # then the textures stay there for the vertex step
    chart_mask = renderer.texels.mask if on_device else renderer.texels.mask.cpu().numpy()
    baked = bake_materials(renderer, images, views, keep_on_device=on_device)
    total = 1 + len(baked)
    report(callback, PHASE_BAKE, 1, total)
    mask = next(iter(baked.values()))[1]  # one mask for all materials
    logger.debug("baked: %.1f%% of texels painted", 100.0 * float((mask > 0).sum()) / mask.shape[0] / mask.shape[1])
    names = list(baked)
    return inpaint_textures({name: texture for name, (texture, _) in baked.items()}, mask, vertices, uv,
                            np.asarray(faces), chart_mask=chart_mask, mode=inpaint_mode,
                            on_filled=lambda name: report(callback, PHASE_BAKE, 2 + names.index(name), total))


def compile_cpu_loops() -> float:
    """Compile the numba loops of the CPU path (rasterizer, back-projection, merge) now, by baking a
    tiny mesh, so that the first request does not pay for it; returns the seconds it took."""
    import time

    import trimesh

    from hy3dpaint.uv import mesh_uv_wrap

    started = time.perf_counter()
    mesh = mesh_uv_wrap(trimesh.creation.icosahedron(), texture_size=32)
    renderer = MeshRenderer.from_trimesh(mesh, texture_size=32, render_size=32)
    view = View(0.0, 0.0, 1.0)
    # The normal map rasterizes (z-buffer loop); the bake builds the texel table (barycentrics,
    # interpolation), back-projects (whose depth map interpolates the same float32 way) and merges.
    image = (renderer.render_normal(view.elevation, view.azimuth).numpy() * 255).astype(np.uint8)
    bake_materials(renderer, {"albedo": [image]}, [view])
    return time.perf_counter() - started
