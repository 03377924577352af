"""`index build --engine ray --ray-address` on a real two-node Ray cluster started here (`ray
start --head`, then `ray start --address`, one CPU each, token auth, killed by process id: never
`ray stop`, which would stop every Ray on the machine): both nodes work, and the catalog and
vectors are the local engine's. A malformed, unreachable or token-less address fails in one
line, in seconds, before anything is written."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, TINY_BIRDER, catalog_by_hash, check_consistent, index_cli, invoke

from indexer.build import build

ray = pytest.importorskip("ray")
RAY = [sys.executable, "-m", "ray.scripts.scripts"]  # `ray`, with this interpreter
MARK = "PHOTO_INDEX_TEST_RAY_CLUSTER"  # in the environment of every process the cluster starts


def free_port() -> int:
    """A port free on every interface (Ray's servers listen on all of them)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def members(temp: Path) -> dict[int, str]:
    """{pid: node name} of the processes whose environment carries our MARK: the cluster's,
    workers included (they run in process groups of their own)."""
    prefix = f"{MARK}={temp}:".encode()
    found = {}
    for entry in os.listdir("/proc"):
        try:
            environ = Path("/proc", entry, "environ").read_bytes() if entry.isdigit() else b""
        except OSError:  # gone, or not ours
            continue
        for var in environ.split(b"\0"):
            if var.startswith(prefix):
                found[int(entry)] = var[len(prefix) :].decode(errors="replace")
    return found


def title(pid: int) -> str:
    """A process's title: Ray names a busy worker `ray::<its task or actor>`."""
    try:
        cmdline = Path("/proc", str(pid), "cmdline").read_bytes()
    except OSError:
        return ""
    return cmdline.split(b"\0")[0].decode(errors="replace")


class Cluster:
    """A head and one worker node on this machine, each `ray start --block` in its own process
    group, sharing a temp dir; started together (the node waits for the head's GCS)."""

    def __init__(self) -> None:
        # short: Ray's unix socket paths (under the temp dir) must fit in 107 bytes
        self.temp = Path(tempfile.mkdtemp(dir="/tmp", prefix="pi-ray-"))
        self.address = f"127.0.0.1:{free_port()}"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),  # workers import this checkout
            "RAY_AUTH_MODE": "token",  # explicit, the same on every node and the driver
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        head = ["--head", "--port", self.address.split(":")[1], "--include-dashboard", "false"]
        head += ["--ray-client-server-port", str(free_port()), "--include-log-monitor", "false"]
        self.start_node("head", *head)
        self.start_node("node", "--address", self.address)

    def start_node(self, name: str, *args: str) -> None:
        common = ["--num-cpus", "1", "--temp-dir", str(self.temp), "--block"]
        common += ["--object-store-memory", str(100 * 2**20), "--disable-usage-stats"]
        common += ["--dashboard-agent-listen-port", str(free_port())]
        common += ["--min-worker-port", "0", "--max-worker-port", "0"]  # any free port
        with open(self.temp / f"{name}.log", "wb") as out:
            self.procs[name] = subprocess.Popen(
                [*RAY, "start", *args, *common],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**self.env, MARK: f"{self.temp}:{name}"},
                start_new_session=True,  # its own process group, killed as one
            )

    def ready(self, timeout: float = 90) -> str:
        """The head's address, once both nodes say they started."""
        deadline = time.monotonic() + timeout
        for name, proc in self.procs.items():
            log = self.temp / f"{name}.log"
            while b"Ray runtime started" not in log.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_bytes().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"`ray start` ({name}) did not start:\n{tail}")
                time.sleep(0.2)
        return self.address

    @contextlib.contextmanager
    def watch(self) -> Iterator[dict[str, set[str]]]:
        """{node: titles of its processes}, sampled while the block runs."""
        seen: dict[str, set[str]] = {name: set() for name in self.procs}
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.1):
                for pid, name in members(self.temp).items():
                    seen[name].add(title(pid))

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield seen
        finally:
            done.set()
            thread.join()

    def stop(self) -> None:
        """SIGKILL our process groups, then any straggler carrying our mark; never `ray stop`."""
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while (left := members(self.temp)) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        for proc in self.procs.values():
            proc.wait(timeout=10)
        shutil.rmtree(self.temp, ignore_errors=True)
        assert not left, f"Ray processes survived: {left}"


@pytest.fixture(scope="module")
def cluster():
    """A two-node cluster, starting while the test does other work (`cluster.ready()`)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the test finds the cluster's processes through /proc")
    ray_cluster = Cluster()
    try:
        ray_cluster.start()
        yield ray_cluster
    finally:
        ray_cluster.stop()


@pytest.mark.usefixtures("cluster")  # first: the cluster boots while this runs
def test_an_unreachable_cluster_fails_in_one_line_within_seconds(photos, tmp_path):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    args = ["--index", tmp_path / "index", "--weights", TINY_BIRDER, "--engine", "ray"]
    # ray.init alone retries a refused port for minutes: the timeout turns that into a failure
    done = index_cli("build", photos, *args, "--ray-address", address, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        f"error: cannot reach the Ray cluster at {address}: connection refused "
        f"(is `ray start --head --port {address.split(':')[1]}` running there?)\n"
    )
    assert not (tmp_path / "index").exists()  # refused before anything was written


def test_a_cluster_that_wants_a_token_says_so(cluster, photos, tmp_path):
    pytest.importorskip("ray._private.authentication", reason="this Ray has no token auth")
    env = {k: v for k, v in cluster.env.items() if not k.startswith("RAY_AUTH")}
    env |= {"RAY_AUTH_MODE": "disabled", "RAY_gcs_server_port_wait_time_s": "1"}  # 1 try
    args = ["--index", tmp_path / "index", "--weights", TINY_BIRDER, "--engine", "ray"]
    args += ["--ray-address", cluster.ready()]
    done = index_cli("build", photos, *args, env=env, timeout=60)
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: cannot start or reach Ray at {cluster.address}: the cluster wants its "
        "authentication token: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or "
        "~/.ray/auth_token) here as on its nodes"
    ]
    assert not (tmp_path / "index").exists()


@pytest.mark.parametrize(
    "address", ["head.example", "http://127.0.0.1:6379", "127.0.0.1:99999", ":6379"]
)
def test_a_malformed_address_is_refused_in_one_line(photos, tmp_path, address):
    args = ["--index", tmp_path / "index", "--weights", TINY_BIRDER, "--engine", "ray"]
    result = invoke("build", photos, *args, "--ray-address", address)
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"error: --ray-address {address!r}: use HOST:PORT (the head's ray start --port, "
        "6379 by default), ray://HOST:PORT or auto\n"
    )
    assert not (tmp_path / "index").exists()


def test_build_on_a_two_node_cluster_matches_the_local_engine(cluster, photos, settings):
    flat = photos / "flat"
    local = build([flat], settings)
    on_ray = settings.index.parent / "ray-index"
    args = ["--index", on_ray, "--weights", TINY_BIRDER, "--batch-size", "4", "--json"]
    args += ["--engine", "ray", "--ray-address", cluster.ready()]
    with cluster.watch() as seen:
        done = index_cli("build", flat, *args, env=cluster.env, timeout=120)
    assert done.returncode == (3 if local.failed else 0), done.stderr
    # one CPU a node: the encoder actor holds one node's, decode tasks run on the other's (a
    # worker titled with both would be decode fused into the actor: one CPU for everything)
    encoding = {n for n, titles in seen.items() if any("_EncoderActor" in t for t in titles)}
    decoding = {n for n, titles in seen.items() if any("_decode_batch" in t for t in titles)}
    assert len(encoding) == 1 and decoding == {"head", "node"} - encoding, seen
    summary = json.loads(done.stdout)
    assert (summary["images"], summary["vectors"]) == (local.images, local.vectors)
    rec_a, vec_a = catalog_by_hash(settings.index)
    rec_b, vec_b = catalog_by_hash(on_ray)
    strip = ("content_id",)  # assigned in commit order; Ray's batches come back in any order
    assert {p: {k: v for k, v in r.items() if k not in strip} for p, r in rec_a.items()} == {
        p: {k: v for k, v in r.items() if k not in strip} for p, r in rec_b.items()
    }
    assert vec_a.keys() == vec_b.keys() and len(vec_a) == local.vectors > 10
    assert max(np.abs(vec_a[h] - vec_b[h]).max() for h in vec_a) <= 1e-5
    check_consistent(on_ray, local.images)  # and its FAISS file holds those vectors
