"""Each shared name is defined once: the weights folder and file names in ``hy3dcore.layout``, the ImageNet
statistics in ``hy3dcore.image_encoders``; every stage reads them from there."""

from __future__ import annotations

import ast
from pathlib import Path

from hy3dcore import image_encoders, layout

SRC = Path(__file__).resolve().parents[2] / "src"
FOLDER_NAMES = {layout.SHAPE_SUBFOLDER, layout.PAINT_SUBFOLDER, layout.DINO_SUBFOLDER, layout.REALESRGAN_FILE}
STATISTICS = {image_encoders.IMAGENET_MEAN, image_encoders.IMAGENET_STD}


def literals(path: Path) -> list[tuple[int, object]]:
    """(line, value) of every string constant and every tuple of number constants in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.Tuple) and node.elts and all(isinstance(e, ast.Constant) for e in node.elts):
            found.append((node.lineno, tuple(e.value for e in node.elts)))
    return found


def test_folder_names_and_imagenet_statistics_are_written_only_in_hy3dcore():
    owners = {SRC / "hy3dcore" / "layout.py": FOLDER_NAMES, SRC / "hy3dcore" / "image_encoders.py": STATISTICS}
    repeated = [f"{path.relative_to(SRC)}:{line}: {value!r}"
                for path in sorted(SRC.rglob("*.py"))
                for line, value in literals(path)
                if value in FOLDER_NAMES | STATISTICS and value not in owners.get(path, ())]
    assert repeated == []


def test_the_stages_and_the_server_use_the_shared_names():
    from hy3d_serving import weights
    from hy3dpaint import pipeline
    from hy3dshape import loading

    assert loading.DEFAULT_SUBFOLDER is layout.SHAPE_SUBFOLDER
    assert pipeline.MULTIVIEW_SUBFOLDER is layout.PAINT_SUBFOLDER and pipeline.DINO_SUBFOLDER is layout.DINO_SUBFOLDER
    assert weights.SHAPE_SUBFOLDER is layout.SHAPE_SUBFOLDER and weights.REALESRGAN_FILE is layout.REALESRGAN_FILE


def test_one_error_type_for_weights_everywhere():
    from hy3d_serving import weights
    from hy3dcore.loading import WeightsError
    from hy3dpaint import models
    from hy3dshape.loading import ConfigError

    assert weights.WeightsError is WeightsError and models.WeightsError is WeightsError
    assert issubclass(ConfigError, WeightsError)
