"""Background removal for images without alpha: ``BackgroundRemover()(image)`` -> RGBA.

Two methods, chosen once at construction and reported in ``remover.method`` and in the log:

* ``"rembg"``: the ``rembg`` package (a pinned dependency) running a u2net ONNX model file that is
  already on disk through onnxruntime (as the official app, which uses rembg's default u2net
  session: same 320 x 320 input and normalisation). The file is ``HY3D_REMBG_MODEL`` (a path to an
  ``.onnx`` file) or ``$U2NET_HOME/u2net.onnx``; nothing is ever downloaded. onnxruntime runs it on
  CUDA when ``onnxruntime-gpu`` is installed and a GPU is visible (the image), else on the CPU.
* ``"classical"`` (fallback, for plain backgrounds): the background colour is the median of a thin
  band along the image border; pixels within ``BACKGROUND_COLOR_DISTANCE`` (CIELAB delta E) of
  it *and connected to the border* are background, so interior pixels of a similar colour
  survive; the mask is cleaned with a small morphological open/close, components smaller than
  ``MIN_COMPONENT_FRACTION`` of the largest are dropped, and the edge is softened slightly.

An image that already has a non-constant alpha channel is returned unchanged (its alpha is the mask).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

REMBG = "rembg"
CLASSICAL = "classical"
#: Environment variable naming the u2net ``.onnx`` file (takes precedence over ``U2NET_HOME``).
MODEL_PATH_ENV = "HY3D_REMBG_MODEL"
#: rembg's own model folder variable; the file looked for there.
U2NET_HOME_ENV = "U2NET_HOME"
U2NET_FILE_NAME = "u2net.onnx"
#: Colour of the transparent background rembg writes (white, as the official app).
REMBG_BACKGROUND = (255, 255, 255, 0)

#: The classical mask is computed on a copy whose longer side is at most this (then upscaled).
MAX_WORKING_SIDE = 1024
#: Width of the border band whose median colour is the background colour, as a fraction of the
#: shorter side (at least one pixel).
BORDER_BAND_RATIO = 0.01
#: Largest CIELAB (CIE76) distance from the background colour of a background pixel.
BACKGROUND_COLOR_DISTANCE = 14.0
#: Below this fraction of border pixels near the background colour, the background is not plain.
MIN_PLAIN_BORDER_FRACTION = 0.6
#: Side of the elliptic open/close kernel, as a fraction of the working image's shorter side.
MORPH_KERNEL_RATIO = 0.006
MIN_MORPH_KERNEL_PX = 3
#: Foreground components smaller than this fraction of the largest one are dropped.
MIN_COMPONENT_FRACTION = 0.05
#: Gaussian sigma and kernel side (working-image pixels) of the edge softening: the edge ramps over
#: one pixel on each side; a sigma of 0 gives a hard mask.
EDGE_SOFTEN_SIGMA_PX = 0.7
EDGE_SOFTEN_KERNEL_PX = 3


def rembg_model_path() -> Path | None:
    """The local u2net model file named by ``HY3D_REMBG_MODEL`` or ``U2NET_HOME``, if it exists."""
    path, reason = _locate_model()
    if path is None and os.environ.get(MODEL_PATH_ENV):
        logger.warning("%s; rembg will not be used", reason)
    return path


def _locate_model() -> tuple[Path | None, str]:
    """``(model file, "")`` or ``(None, why not)``, the reason naming the path that was looked for."""
    explicit = os.environ.get(MODEL_PATH_ENV)
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_file():
            return path, ""
        return None, f"{MODEL_PATH_ENV}={explicit} is not a file"
    home = os.environ.get(U2NET_HOME_ENV)
    if home:
        path = Path(home).expanduser() / U2NET_FILE_NAME
        if path.is_file():
            return path, ""
        return None, f"no local u2net model: missing {path} (${U2NET_HOME_ENV}/{U2NET_FILE_NAME})"
    return None, (f"no local u2net model: set {MODEL_PATH_ENV} to an .onnx file or put "
                  f"{U2NET_FILE_NAME} in ${U2NET_HOME_ENV} (neither is set)")


class BackgroundRemover:
    """Callable: ``remover(image: PIL.Image)`` -> PIL RGBA image whose alpha is the object mask.

    ``method`` is ``"rembg"`` when the ``rembg`` package is importable and its u2net model file is
    local (see ``rembg_model_path``), otherwise ``"classical"``; ``method=`` forces one (forcing
    ``"rembg"`` without package or model raises ``RuntimeError`` saying what is missing, naming the
    model path that was looked for). The load is logged as ``method=rembg`` or ``method=classical``;
    ``model_path`` is the model file rembg runs (``None`` for the classical method). An image
    with a non-constant alpha channel is returned unchanged. Raises ``ValueError`` when the
    classical method finds no object (the whole image is background-coloured).
    """

    def __init__(self, method: str | None = None):
        if method not in (None, REMBG, CLASSICAL):
            raise ValueError(f"unknown background removal method {method!r}; allowed: {REMBG}, {CLASSICAL}")
        self._session = None
        self._rembg_remove = None
        self._model_path: Path | None = None
        if method in (None, REMBG):
            reason = self._load_rembg()
            if reason is not None and method == REMBG:
                raise RuntimeError(f"background removal method 'rembg' is unavailable: {reason}")
            if reason is not None:
                logger.info("background removal: method=classical, the fallback for plain backgrounds (%s)", reason)
        self.method = REMBG if self._session is not None else CLASSICAL
        self.model_path = self._model_path

    def _load_rembg(self) -> str | None:
        """Open a rembg session on the local model; return why not, or ``None`` on success."""
        model_path, reason = _locate_model()
        if model_path is None:
            if os.environ.get(MODEL_PATH_ENV):
                logger.warning("%s; rembg will not be used", reason)
            return reason
        try:
            import rembg
        except ImportError:
            return f"the rembg package is not installed (pip install rembg; model file {model_path})"
        # "u2net_custom" loads the given file and never downloads.
        self._session = rembg.new_session("u2net_custom", model_path=str(model_path))
        self._rembg_remove = rembg.remove
        self._model_path = model_path
        providers = self._session.inner_session.get_providers()
        logger.info("background removal: method=rembg (%s through onnxruntime, %s)", model_path, ", ".join(providers))
        return None

    def __call__(self, image: Image.Image) -> Image.Image:
        if not isinstance(image, Image.Image):
            raise TypeError(f"BackgroundRemover expects a PIL image, got {type(image).__name__}")
        if has_mask(image):
            logger.debug("background removal skipped: the image has an alpha mask")
            return image if image.mode == "RGBA" else image.convert("RGBA")
        rgb = image.convert("RGB")
        if self.method == REMBG:
            return self._rembg_remove(rgb, session=self._session, bgcolor=REMBG_BACKGROUND).convert("RGBA")
        alpha = classical_foreground_mask(np.asarray(rgb))
        return Image.fromarray(np.dstack([np.asarray(rgb), alpha]))


def has_mask(image: Image.Image) -> bool:
    """Whether ``image`` carries a non-constant alpha channel (or palette transparency)."""
    if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
        return False
    alpha = np.asarray(image.convert("RGBA"))[..., 3]
    return bool(alpha.min() != alpha.max())


def classical_foreground_mask(rgb: np.ndarray) -> np.ndarray:
    """Object mask of an RGB image on a plain background: uint8 ``[H, W]``, 255 = object.

    See the module docstring for the steps. Raises ``ValueError`` when nothing is left of the object.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] RGB array, got {rgb.dtype} {list(rgb.shape)}")
    height, width = rgb.shape[:2]
    scale = min(1.0, MAX_WORKING_SIDE / max(height, width))
    working = rgb
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        working = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)

    lab = cv2.cvtColor(working.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    band = _border_band(lab.shape[:2])
    background_color = np.median(lab[band], axis=0)
    near = np.linalg.norm(lab - background_color, axis=2) <= BACKGROUND_COLOR_DISTANCE
    plain_fraction = float(near[band].mean())
    if plain_fraction < MIN_PLAIN_BORDER_FRACTION:
        logger.warning(
            "classical background removal: only %.0f%% of the border is near its median colour; "
            "it expects a plain background (install rembg with a local u2net model for others)",
            100 * plain_fraction,
        )
    foreground = ~_connected_to_border(near)
    foreground = _clean(foreground)
    if not foreground.any():
        raise ValueError(
            "classical background removal found no object: every pixel is close to the border colour "
            f"(within {BACKGROUND_COLOR_DISTANCE} delta E); give an image with alpha or a visible object"
        )
    mask = foreground.astype(np.float32)
    if EDGE_SOFTEN_SIGMA_PX > 0:
        mask = cv2.GaussianBlur(mask, (EDGE_SOFTEN_KERNEL_PX, EDGE_SOFTEN_KERNEL_PX), EDGE_SOFTEN_SIGMA_PX)
    if scale < 1.0:
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.round(mask.clip(0.0, 1.0) * 255).astype(np.uint8)


def _border_band(shape: tuple[int, int]) -> np.ndarray:
    band_px = max(1, round(BORDER_BAND_RATIO * min(shape)))
    band = np.zeros(shape, dtype=bool)
    band[:band_px, :] = band[-band_px:, :] = True
    band[:, :band_px] = band[:, -band_px:] = True
    return band


def _connected_to_border(candidates: np.ndarray) -> np.ndarray:
    """The pixels of ``candidates`` 4-connected to the image border through ``candidates``."""
    count, labels = cv2.connectedComponents(candidates.astype(np.uint8), connectivity=4)
    touching = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    touching = touching[touching > 0]  # label 0 is "not a candidate"
    lookup = np.zeros(count, dtype=bool)
    lookup[touching] = True
    return lookup[labels]


def _clean(foreground: np.ndarray) -> np.ndarray:
    """Open then close with a small ellipse, then keep the components of at least
    ``MIN_COMPONENT_FRACTION`` of the largest one's area."""
    side = max(MIN_MORPH_KERNEL_PX, round(MORPH_KERNEL_RATIO * min(foreground.shape)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    mask = foreground.astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    count, labels, stats, _centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return np.zeros(foreground.shape, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.zeros(count, dtype=bool)
    keep[1:] = areas >= MIN_COMPONENT_FRACTION * areas.max()
    return keep[labels]
