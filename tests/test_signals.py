"""Ctrl-C and SIGTERM: a build saves what it embedded, leaves a healthy index and exits 130/143;
`index serve` takes Streamlit down with it. Real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import TINY_BIRDER, check_consistent, free_port, make_distinct_jpegs

from indexer.build import build
from indexer.interrupts import Interrupted
from indexer.settings import Settings
from indexer.verify import verify

N = 100


def start_build(index: Path, root: Path, batch_size: int = 2) -> subprocess.Popen:
    """`index build` in its own session, so a signal to its group is what a terminal sends."""
    cmd = [sys.executable, "-m", "indexer.cli", "build", str(root), "--index", str(index)]
    cmd += ["--weights", str(TINY_BIRDER), "--workers", "1", "--json"]
    cmd += ["--batch-size", str(batch_size)]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def query(index: Path, sql: str) -> tuple:
    """One row from the catalog, read-only, as any other reader would."""
    db = sqlite3.connect(f"file:{index / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchone()
    finally:
        db.close()


def embedded_rows(index: Path) -> int:
    """Committed contents with a vector (0 before the catalog exists)."""
    try:
        return query(index, "SELECT count(*) FROM contents WHERE vector IS NOT NULL")[0]
    except sqlite3.Error:
        return 0


def wait_mid_embed(proc: subprocess.Popen, index: Path, before: int) -> None:
    deadline = time.time() + 60
    while embedded_rows(index) < before + 10:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the build never started embedding"
        time.sleep(0.02)


def processes_in_session(sid: int) -> list[int]:
    """Live processes of a session (the build and any decode worker it left behind)."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:  # state, ..., session id
            alive.append(int(entry))
    return alive


def verify_json(index: Path) -> tuple[int, dict]:
    out = subprocess.run(
        [sys.executable, "-m", "indexer.cli", "verify", "--index", str(index), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.returncode, json.loads(out.stdout)


@pytest.mark.parametrize(
    "signum, to_group, incremental",
    [(signal.SIGINT, True, False), (signal.SIGTERM, False, True)],
    ids=["ctrl-c-first-build", "sigterm-incremental"],
)
def test_interrupted_build_saves_its_work_and_the_next_one_continues(
    tmp_path, tiny_encoder, signum, to_group, incremental
):
    root, index = tmp_path / "pics", tmp_path / "index"
    make_distinct_jpegs(root / "b", N, seed=3)
    before = 0
    if incremental:  # an index that already has pictures and a FAISS file
        make_distinct_jpegs(root / "a", 12, seed=4)
        settings = Settings.from_env(env={}, index=index, weights=str(TINY_BIRDER), workers=1)
        before = build([root / "a"], settings, encoder=tiny_encoder).vectors
    proc = start_build(index, root)
    wait_mid_embed(proc, index, before)
    (os.killpg if to_group else os.kill)(proc.pid, signum)  # Ctrl-C reaches the workers too
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert processes_in_session(proc.pid) == []  # decode workers were shut down
    summary = json.loads(out)
    done = summary["embedded"]
    assert summary["interrupted"] == signal.Signals(signum).name
    assert 10 <= done < N and summary["to_embed"] == N
    assert f"interrupted: {done} of {N} new images embedded and saved" in err
    assert "run the same `index build` again to continue" in err
    code, report = verify_json(index)
    assert (code, report["problems"]) == (0, {}), report["messages"]
    check_consistent(index, before + done)  # catalog images == vectors == FAISS ids
    assert query(index, "SELECT status FROM runs ORDER BY id DESC") == ("interrupted",)

    again = start_build(index, root, batch_size=16)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    summary = json.loads(out)
    assert summary["embedded"] == N - done  # only what was not done
    assert summary["vectors"] == before + N and summary["interrupted"] is None
    check_consistent(index, before + N)


@pytest.mark.parametrize("at_event, saved", [("embed", 8), ("scan", 0)])
def test_library_build_raises_interrupted_with_what_it_saved(
    tmp_path, tiny_encoder, at_event, saved
):
    """A KeyboardInterrupt mid-embed or before it (here from the progress callback) ends `build`
    with `Interrupted` carrying the summary; the index on disk is healthy up to that point."""
    root, index = tmp_path / "pics", tmp_path / "index"
    make_distinct_jpegs(root, 40, seed=5)
    settings = Settings.from_env(
        env={}, index=index, weights=str(TINY_BIRDER), workers=1, batch_size=4
    )

    def progress(event: str, **fields: int) -> None:
        if event == at_event and fields.get("done", 8) >= 8:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as stopped:
        build([root], settings, encoder=tiny_encoder, progress=progress)
    summary = stopped.value.result
    assert stopped.value.signum == signal.SIGINT and summary.interrupted == "SIGINT"
    assert summary.embedded == saved and summary.to_embed == (40 if saved else 0)
    if saved:
        assert verify(settings)["problems"] == {}
        check_consistent(index, saved)
    else:  # a first build stopped before storing anything leaves no empty index behind
        assert not index.exists()
    assert build([root], settings, encoder=tiny_encoder).embedded == 40 - saved


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:  # state, parent pid
            kids.append(int(entry))
    return kids


def test_sigterm_to_serve_stops_streamlit_and_frees_the_port(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", "serve", "--index", str(tmp_path / "index")]
        + ["--port", str(port), "--weights", str(TINY_BIRDER), "--device", "cpu"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, "serve did not start"
                time.sleep(0.2)
        streamlit = children_of(proc.pid)
        assert streamlit
        proc.send_signal(signal.SIGTERM)  # to `index serve` only, as `kill PID` does
        assert proc.wait(timeout=20) == 143
        deadline = time.time() + 5
        while any(Path(f"/proc/{pid}").exists() for pid in streamlit):
            assert time.time() < deadline, "Streamlit outlived `index serve`"
            time.sleep(0.1)
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
            pass
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
