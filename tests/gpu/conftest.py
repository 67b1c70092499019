"""The CUDA test tier: every test in this folder needs a CUDA device and is skipped without one.

Run it on a GPU machine with ``scripts/test tests/gpu``; the rest of the suite pins ``HY3D_DEVICE=cpu``
(``tests/conftest.py``) and passes there too.
"""

from __future__ import annotations

import pytest
import torch

CUDA = torch.cuda.is_available()
#: Half-precision dtypes the tier runs in.
HALF_DTYPES = (torch.float16, torch.bfloat16)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (the CUDA tier, tests/gpu)")
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)
