"""The tritonserver build shipped in the ``nvidia-pytriton`` wheel, made runnable with our model repository.

The wheel carries ``tritonserver``, the Python backend and one backend stub per Python version. We run
the binary directly (not PyTriton's Python API) with a backend directory of our own under the virtual
environment (``<venv>/triton-backends/python/``: links to the backend library, its utils module and the
stub of this interpreter's version), so the installed package is never modified.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hy3d_serving import settings as s

#: Python package that carries the Triton build.
TRITON_PACKAGE = "pytriton"
#: Name of the Python backend inside a backend directory.
PYTHON_BACKEND = "python"
#: Files of the Python backend linked into our backend directory (the stub is added per Python version).
PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
STUB_NAME = "triton_python_backend_stub"
#: Default seconds tritonserver waits for in-flight requests after SIGTERM (the launcher passes
#: ``HY3D_DRAIN_TIMEOUT_S``).
EXIT_TIMEOUT_S = 600
#: glibc malloc: allocations from this size on are mmapped, and unmapped when freed (``MALLOC_MMAP_THRESHOLD_``).
#: Unset, glibc raises the threshold after each large free (up to 32 MiB), so the stages' numpy/torch
#: buffers (renders, textures: 4-64 MiB) land on the brk heap, which fragments and grows request after
#: request (the paint_pbr stub: +13-26% over 100 requests). Fixed, the heap stays flat. 1 MiB keeps the
#: many small and mid-sized buffers on the heap (128 KiB, glibc's starting value, cost more CPU time in
#: mmap/munmap). Set in the environment, the variable is left as it is.
MALLOC_MMAP_THRESHOLD_BYTES = 1024 * 1024
MALLOC_MMAP_THRESHOLD_ENV = "MALLOC_MMAP_THRESHOLD_"
#: Seconds allowed for ``ldd`` to list the stub's libraries.
LDD_TIMEOUT_S = 30
#: Libraries ``perf_analyzer`` (tritonclient wheel) links by their plain names, and the prefix of the
#: name-mangled copy the nvidia-pytriton wheel bundles.
PERF_ANALYZER_LIBRARIES = {"libb64.so.0d": "libb64-", "libcudart.so.12": "libcudart-"}


class TritonRuntimeError(RuntimeError):
    """The Triton build is missing or cannot run here; the message says what to install."""


@dataclass(frozen=True)
class TritonInstall:
    """Paths of the Triton build inside the installed ``nvidia-pytriton`` wheel."""

    root: Path  # .../site-packages/pytriton/tritonserver (or HY3D_TRITON_HOME, e.g. /opt/tritonserver)
    libs_dir: Path  # .../site-packages/nvidia_pytriton.libs (bundled shared libraries; root/lib otherwise)
    #: True for a container install whose ``backends/`` already holds the Python backend with its stub.
    prebuilt_backends: bool = False

    @property
    def backends_dir(self) -> Path:
        return self.root / "backends"

    @property
    def server_binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def python_backend_dir(self) -> Path:
        return self.root / "backends" / PYTHON_BACKEND

    @property
    def cache_directory(self) -> Path:
        """Folder of Triton's response cache implementations (``local/libtritoncache_local.so``)."""
        return self.root / "caches"

    def stub_for(self, version: tuple[int, int]) -> Path:
        """The Python backend stub built for Python ``version`` (major, minor)."""
        return self.root / "python_backend_stubs" / f"{version[0]}.{version[1]}" / STUB_NAME


def find_triton_install(environ: Mapping[str, str] | None = None) -> TritonInstall:
    """The Triton install to run: ``HY3D_TRITON_HOME`` when set (NVIDIA's container layout, e.g.
    ``/opt/tritonserver``), else the build of the installed ``nvidia-pytriton`` wheel (not imported).

    Raises :class:`TritonRuntimeError` naming what is missing.
    """
    home = s.lookup(s.TRITON_HOME, environ=environ)
    if home:
        install = TritonInstall(Path(home), Path(home) / "lib", prebuilt_backends=True)
        for path in (install.server_binary, install.python_backend_dir / STUB_NAME):
            if not path.exists():
                raise TritonRuntimeError(f"{s.TRITON_HOME.env}={home}: {path} is missing")
        return install
    spec = importlib.util.find_spec(TRITON_PACKAGE)
    if spec is None or spec.origin is None:
        raise TritonRuntimeError("nvidia-pytriton is not installed; run scripts/setup-env (requirements.lock)")
    package_dir = Path(spec.origin).parent
    install = TritonInstall(package_dir / "tritonserver", package_dir.parent / "nvidia_pytriton.libs")
    for path in (install.server_binary, install.python_backend_dir, install.libs_dir):
        if not path.exists():
            raise TritonRuntimeError(f"the nvidia-pytriton install is incomplete: {path} is missing")
    return install


def assemble_backend_directory(install: TritonInstall, target: Path,
                               version: tuple[int, int] | None = None) -> Path:
    """Create (or refresh) ``target/python/`` with links to the backend and the matching stub.

    Returns ``target``, to be passed as ``--backend-directory``. Raises :class:`TritonRuntimeError`
    when no stub exists for ``version`` (default: this interpreter's).
    """
    version = version or sys.version_info[:2]
    stub = install.stub_for(version)
    if not stub.is_file():
        available = sorted(p.name for p in (install.root / "python_backend_stubs").iterdir())
        raise TritonRuntimeError(
            f"no Triton Python backend stub for Python {version[0]}.{version[1]}; "
            f"stubs exist for {', '.join(available)}: create .venv with one of those"
        )
    backend = target / PYTHON_BACKEND
    backend.mkdir(parents=True, exist_ok=True)
    links = {name: install.python_backend_dir / name for name in PYTHON_BACKEND_FILES}
    links[STUB_NAME] = stub
    for name, source in links.items():
        link = backend / name
        if link.is_symlink() and Path(os.readlink(link)) == source:
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(source)
    return target


def check_stub_libraries(stub: Path, environ: Mapping[str, str]) -> None:
    """Raise :class:`TritonRuntimeError` naming any shared library the stub cannot find (e.g. libpython)."""
    result = subprocess.run(["ldd", str(stub)], capture_output=True, text=True, env=dict(environ),
                            timeout=LDD_TIMEOUT_S, check=False)
    missing = [line.split("=>")[0].strip() for line in result.stdout.splitlines() if "not found" in line]
    if missing:
        hint = " (Debian/Ubuntu: apt-get install libpython3.X)" if any("python" in m for m in missing) else ""
        raise TritonRuntimeError(f"the Triton Python backend stub {stub} needs {', '.join(missing)}{hint}")


def perf_analyzer_library_dir(install: TritonInstall, target: Path) -> Path:
    """Create ``target`` with correctly named links to the bundled libraries ``perf_analyzer`` needs.

    Put the returned directory on ``LD_LIBRARY_PATH`` when running ``perf_analyzer``.
    """
    target.mkdir(parents=True, exist_ok=True)
    for name, prefix in PERF_ANALYZER_LIBRARIES.items():
        matches = sorted(install.libs_dir.glob(f"{prefix}*"))
        if not matches:
            raise TritonRuntimeError(f"{install.libs_dir} has no {prefix}* library for {name}")
        link = target / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(matches[0])
    return target


def interpreter_library_dir() -> Path | None:
    """The folder holding the running interpreter's own ``libpython3.X.so.1.0``, if it was built shared.

    The stub embeds a libpython; it must be the one this interpreter's standard library was built with
    (e.g. a pyenv 3.11.7 ``lib-dynload/_ssl`` needs symbols that Debian's 3.11.2 libpython lacks), so
    this folder goes first on ``LD_LIBRARY_PATH``. None when the interpreter uses the system library.
    """
    libdir = sysconfig.get_config_var("LIBDIR")
    name = f"libpython{sys.version_info[0]}.{sys.version_info[1]}.so.1.0"
    return Path(libdir) if libdir and (Path(libdir) / name).exists() else None


def server_environment(install: TritonInstall, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for tritonserver: this venv's ``bin/`` first on PATH, the bundled libraries loadable, and
    glibc's mmap threshold fixed (:data:`MALLOC_MMAP_THRESHOLD_BYTES`) so that the stubs' memory stays flat.

    The stub embeds libpython and finds this environment's packages through ``python3`` on PATH, so PATH
    must start with the directory of the running interpreter, and the interpreter's own libpython (when
    it has one) comes first on ``LD_LIBRARY_PATH``.
    """
    env = dict(os.environ if base is None else base)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")]).rstrip(os.pathsep)
    libpython_dir = interpreter_library_dir()
    library_dirs = [str(libpython_dir)] if libpython_dir else []
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*library_dirs, str(install.libs_dir), env.get("LD_LIBRARY_PATH", "")]
                                             ).rstrip(os.pathsep)
    env.setdefault(MALLOC_MMAP_THRESHOLD_ENV, str(MALLOC_MMAP_THRESHOLD_BYTES))  # flat stub memory, see above
    return env


@dataclass(frozen=True)
class ServerEndpoints:
    """Where tritonserver listens."""

    bind_address: str
    http_port: int
    grpc_port: int
    metrics_port: int

    @property
    def probe_host(self) -> str:
        """Host to reach the server from this machine (a wildcard bind is reached on loopback)."""
        return "127.0.0.1" if self.bind_address in ("0.0.0.0", "::", "") else self.bind_address

    @property
    def http_url(self) -> str:
        return f"{self.probe_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.probe_host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"{self.probe_host}:{self.metrics_port}"


def server_command(install: TritonInstall, model_repository: Path, backend_directory: Path,
                   endpoints: ServerEndpoints, log_verbose: int = 0,
                   extra_args: tuple[str, ...] = (), exit_timeout_s: int = EXIT_TIMEOUT_S) -> list[str]:
    """The tritonserver command line for our model repository."""
    address = endpoints.bind_address
    return [
        str(install.server_binary),
        f"--model-repository={model_repository}",
        f"--backend-directory={backend_directory}",
        f"--http-address={address}", f"--http-port={endpoints.http_port}",
        f"--grpc-address={address}", f"--grpc-port={endpoints.grpc_port}",
        f"--metrics-address={address}", f"--metrics-port={endpoints.metrics_port}",
        f"--exit-timeout-secs={exit_timeout_s}",
        f"--log-verbose={log_verbose}",
        *extra_args,
    ]
