"""A real Milvus server for the tests: the standalone server that the PyPI package `milvus` (2.3.5,
"embedded Milvus") brings, started once per session in its own temp folder on free local ports,
with authentication on (its built-in user root:Milvus), and stopped by its own process id.

It dies with the test process too (PR_SET_PDEATHSIG), so a killed pytest leaves no server. When
it cannot start (no package, another platform, no memory), the tests that need it skip and say why.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TINY_BIRDER

TOKEN = "root:Milvus"  # the server's built-in user and password
START_SECONDS = 180  # ~10-20 s on a quiet 2-core box


@dataclass(frozen=True)
class Server:
    uri: str
    token: str
    pid: int
    folder: Path


def _free_ports(n: int) -> list[int]:
    """`n` distinct free local ports (all held open while choosing)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _own_etcd(folder: Path, client: int, peer: int) -> None:
    """Point the server's embedded etcd at free ports: left alone it takes 2379/2380, and a
    second Milvus on the machine (another session's) would make it crash."""
    urls = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    etcd = folder / "configs" / "etcd.yaml"
    etcd.write_text(
        f"name: default\nlisten-client-urls: {urls[0]}\nadvertise-client-urls: {urls[0]}\n"
        f"listen-peer-urls: {urls[1]}\ninitial-advertise-peer-urls: {urls[1]}\n"
        f"initial-cluster: default={urls[1]}\n"
    )
    config = folder / "configs" / "milvus.yaml"
    text, found = re.subn(
        r"(?m)^etcd:\n  endpoints: localhost:\d+\n",
        f"etcd:\n  endpoints: 127.0.0.1:{client}\n  config:\n    path: {etcd}\n",
        config.read_text(),
    )
    if found != 1:
        raise RuntimeError(f"{config}: no etcd endpoints line to point at its own etcd")
    config.write_text(text)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _launch(folder: Path) -> tuple[subprocess.Popen, int, int]:
    """Write the server's config (its own folder, free ports, auth on), unpack its binaries and
    start it: (process, gRPC port, health port)."""
    import milvus

    proxy, health, client, peer = _free_ports(4)
    config = milvus.MilvusServerConfig(data_dir=str(folder), proxy_port=proxy)
    config.set("authorization_enabled", True)
    config.resolve()  # picks free ports for its other services, writes configs/milvus.yaml
    _own_etcd(folder, client, peer)
    milvus._initialize_data_files(str(folder))  # the pinned 2.3.5's own unpacking of bin/
    binary = folder / "bin" / "milvus"
    env = {
        **os.environ,
        "DEPLOY_MODE": "STANDALONE",
        "METRICS_PORT": str(health),
        "MILVUS_RUN_DIR": str(folder / "run"),
        "LD_LIBRARY_PATH": f"{binary.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}",
    }
    with open(folder / "logs" / "milvus.log", "wb") as log:
        proc = subprocess.Popen(
            [str(binary), "run", "standalone"], cwd=folder, env=env, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
        )  # fmt: skip
    return proc, proxy, health


def _wait_healthy(proc: subprocess.Popen, health: int) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"it exited with status {proc.returncode}")
        try:
            with opener.open(f"http://127.0.0.1:{health}/healthz", timeout=5) as resp:
                if b"OK" in resp.read():
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"not healthy after {START_SECONDS} s")


def start(folder: Path) -> tuple[subprocess.Popen, Server]:
    """A Milvus server living in `folder`, healthy (RuntimeError/OSError when it is not); the
    caller stops it with `stop` (bench/milvus_backend.py --backends server uses this too)."""
    proc, port, health = _launch(folder)
    try:
        _wait_healthy(proc, health)
    except BaseException:
        stop(proc)
        raise
    return proc, Server(f"http://127.0.0.1:{port}", TOKEN, proc.pid, folder)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to its pid, SIGKILL after 2 s (its data is thrown away); never anything by name."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The session's Milvus server (a Server: uri, token), or a skip naming why there is none."""
    try:
        import milvus  # noqa: F401
    except ImportError:
        pytest.skip("no Milvus server to test against: pip install 'milvus==2.3.5' (.[test])")
    folder = tmp_path_factory.mktemp("milvus-server")
    try:
        proc, server = start(folder)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        pytest.skip(f"the embedded Milvus server did not start: {exc} (see {folder}/logs)")
    try:
        yield server
    finally:
        stop(proc)


# --------------------------------------------------------------------------- where tests export
def build_index(roots: list[Path], index: Path, encoder) -> None:
    """`roots` indexed into `index` with the tiny weights (the session's encoder)."""
    from indexer.build import build
    from indexer.settings import Settings

    settings = Settings.from_env(env={}, index=index, weights=str(TINY_BIRDER), workers=1)
    build(roots, settings, encoder=encoder)


@dataclass(frozen=True)
class Target:
    """Where a test's collection lives: a Milvus Lite database in tmp, or the session's server
    (a collection of its own, dropped after the test)."""

    uri: str
    collection: str
    token: str = ""  # Milvus Lite takes none

    def args(self, flag: str = "--uri") -> list[str]:
        return [flag, self.uri, "--collection", self.collection]

    def read(self, fields: list[str]) -> list[dict]:
        """Every entity, read with pymilvus itself (never with our code), at Strong consistency."""
        from pymilvus import MilvusClient

        from indexer.milvus.client import close

        client = MilvusClient(uri=self.uri, token=self.token)
        try:
            client.load_collection(self.collection)
            return client.query(
                self.collection, filter="id >= 0", output_fields=fields, limit=16_384
            )
        finally:
            close(client, self.uri)

    def describe_index(self) -> dict:
        from pymilvus import MilvusClient

        client = MilvusClient(uri=self.uri, token=self.token)
        try:
            return client.describe_index(self.collection, "vector")
        finally:
            client.close()

    def drop(self) -> None:
        from pymilvus import MilvusClient

        client = MilvusClient(uri=self.uri, token=self.token)
        try:
            client.drop_collection(self.collection)
        finally:
            client.close()


def target_in(server: Server | None, folder: Path) -> Target:
    """Milvus Lite in `folder` (collection photos, the default) or a new collection on `server`."""
    if server is None:
        return Target(str(folder / "photos.milvus.db"), "photos")
    return Target(server.uri, f"t{uuid.uuid4().hex[:16]}", server.token)


@pytest.fixture(scope="module", params=["lite", "server"])
def backend(request: pytest.FixtureRequest) -> Server | None:
    """Each test that takes it runs on Milvus Lite (None) and on the session's server."""
    return request.getfixturevalue("milvus_server") if request.param == "server" else None


@pytest.fixture(autouse=True)
def server_token(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """MILVUS_TOKEN set to the server's user for tests on the server (as a user would)."""
    if "backend" in request.fixturenames:
        server = request.getfixturevalue("backend")
        if server is not None:
            monkeypatch.setenv("MILVUS_TOKEN", server.token)


@pytest.fixture
def target(backend: Server | None, tmp_path: Path) -> Iterator[Target]:
    """A fresh collection for one test, on Lite or on the server."""
    where = target_in(backend, tmp_path)
    yield where
    if backend is not None:
        where.drop()
