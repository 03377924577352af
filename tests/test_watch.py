"""`index watch` on real folders: photos copied in become searchable without a manual build,
moves relink, deletions leave, bursts give few builds, vanished roots cost nothing, two
watchers (and a watcher beside another writer) never corrupt the index.

Waits are on conditions (a run recorded, a note printed) with a generous hang guard; no
assertion is about how long anything took.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import (
    PHOTOS,
    ROOT,
    TINY_BIRDER,
    check_consistent,
    free_port,
    invoke,
    make_distinct_jpegs,
)

from indexer.search import search
from indexer.settings import Settings
from indexer.store.catalog import Catalog
from indexer.watch import Watcher, WatchOptions
from indexer.watch import status as watch_status

GUARD = 120.0  # seconds before a wait is called a hang
FAST = WatchOptions(settle=0.3, max_wait=GUARD, recheck=0.2, retry=0.2, poll_interval=0.3)
FLAT = PHOTOS / "flat"


class Running:
    """A Watcher in a thread, its runs and notes recorded; `until` waits for a condition."""

    def __init__(self, roots: list[Path], settings: Settings, options: WatchOptions, encoder):
        self.cond = threading.Condition()
        self.runs: list = []
        self.notes: list[str] = []
        self.error: BaseException | None = None
        self.watcher = Watcher(
            roots, settings, options, encoder=encoder, on_run=self._run, on_note=self._note
        )
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        try:
            self.watcher.run()
        except BaseException as exc:  # shown by the next wait
            self.error = exc
        with self.cond:
            self.cond.notify_all()

    def _run(self, run) -> None:
        with self.cond:
            self.runs.append(run)
            self.cond.notify_all()

    def _note(self, message: str) -> None:
        with self.cond:
            self.notes.append(message)
            self.cond.notify_all()

    def until(self, predicate, what: str):
        with self.cond:
            ok = self.cond.wait_for(lambda: self.error or predicate(), timeout=GUARD)
        assert self.error is None, f"the watcher failed: {self.error!r}"
        assert ok, f"hang guard: {what}; runs {[r.as_dict() for r in self.runs]}, {self.notes}"
        return ok

    def next_run(self, after: int, what: str):
        self.until(lambda: len(self.runs) > after, what)
        return self.runs[after]

    def stop(self) -> None:
        self.watcher.stop()
        self.thread.join(GUARD)
        assert not self.thread.is_alive()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Three photos in a folder of their own."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("bee.jpg", "books.jpg", "cake.jpg"):
        shutil.copy(FLAT / name, folder / name)
    return folder


@pytest.fixture
def watching(root, settings, tiny_encoder):
    """A watcher on `root` whose first build is done."""
    running = Running([root], settings, FAST, tiny_encoder)
    first = running.next_run(0, "the first build")
    assert (first.trigger, first.summary.new, first.summary.embedded) == ("start", 3, 3)
    yield running
    running.stop()


def top_path(settings: Settings, query: Path, encoder) -> str:
    return search(query, settings, k=1, encoder=encoder)[0].path


def content_of(settings: Settings, path: Path) -> int | None:
    cat = Catalog(settings.index, readonly=True)
    try:
        return next((r["content_id"] for r in cat.records() if r["path"] == str(path)), None)
    finally:
        cat.close()


def test_a_photo_copied_in_becomes_searchable(watching, root, settings, tiny_encoder):
    shutil.copy(FLAT / "cat.jpg", root / "new cat.jpg")
    run = watching.next_run(1, "a run for the copied photo")
    assert (run.trigger, run.summary.new, run.summary.embedded) == ("changes", 1, 1)
    assert run.summary.images == 4 and run.events >= 1
    assert top_path(settings, FLAT / "cat.jpg", tiny_encoder) == str(root / "new cat.jpg")


def test_a_moved_photo_is_relinked_without_embedding(watching, root, settings, tiny_encoder):
    before = content_of(settings, root / "cake.jpg")
    (root / "desserts").mkdir()
    (root / "cake.jpg").rename(root / "desserts" / "cake.jpg")
    watching.until(lambda: sum(r.summary.moved for r in watching.runs) == 1, "the move")
    assert sum(r.summary.embedded for r in watching.runs[1:]) == 0
    assert content_of(settings, root / "desserts" / "cake.jpg") == before
    assert content_of(settings, root / "cake.jpg") is None
    assert top_path(settings, FLAT / "cake.jpg", tiny_encoder) == str(root / "desserts/cake.jpg")


def test_a_deleted_photo_leaves_the_index(watching, root, settings, tiny_encoder):
    (root / "books.jpg").unlink()
    run = watching.next_run(1, "a run for the deletion")
    assert (run.summary.deleted, run.summary.images, run.summary.vectors) == (1, 2, 2)
    hits = search(FLAT / "books.jpg", settings, k=5, encoder=tiny_encoder)
    assert str(root / "books.jpg") not in {h.path for h in hits}
    check_consistent(settings.index, 2)


def test_a_burst_of_500_photos_is_a_few_builds(tmp_path, root, settings, tiny_encoder):
    incoming = tmp_path / "card"
    make_distinct_jpegs(incoming, 500)
    options = WatchOptions(settle=2.0, max_wait=GUARD, recheck=0.2)
    running = Running([root], settings, options, tiny_encoder)
    try:
        running.next_run(0, "the first build")
        for photo in sorted(incoming.iterdir()):  # copied one by one, as a card reader does
            shutil.copy(photo, root / photo.name)
        running.until(lambda: running.runs[-1].summary.images == 503, "all 500 indexed")
        later = running.runs[1:]
        assert 1 <= len(later) <= 3, [r.as_dict() for r in later]
        assert sum(r.summary.new for r in later) == 500
        assert sum(r.summary.failed for r in later) == 0
    finally:
        running.stop()
    check_consistent(settings.index, 503)


def test_a_root_that_goes_and_comes_back_costs_nothing(watching, root, settings):
    away = root.with_name("unmounted")
    root.rename(away)
    watching.until(lambda: any("not there" in n for n in watching.notes), "the root is gone")
    check_consistent(settings.index, 3)  # its files are kept
    away.rename(root)
    watching.until(lambda: any("root back" in r.trigger for r in watching.runs), "it is back")
    run = next(r for r in watching.runs if "root back" in r.trigger)
    assert (run.summary.embedded, run.summary.deleted, run.summary.images) == (0, 0, 3)
    assert sum(r.summary.deleted + r.summary.embedded for r in watching.runs[1:]) == 0
    shutil.copy(FLAT / "cat.jpg", root / "cat.jpg")  # and it is watched again
    watching.until(lambda: watching.runs[-1].summary.images == 4, "a photo in the root again")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify reports closes")
def test_a_file_still_being_written_waits(watching, root, settings):
    data = (FLAT / "cat.jpg").read_bytes()
    with open(root / "slow.jpg", "wb") as fh:
        fh.write(data[: len(data) // 2])
        fh.flush()
        shutil.copy(FLAT / "camera.jpg", root / "camera.jpg")  # a finished file beside it
        time.sleep(10 * FAST.settle)  # many quiet periods: no run while slow.jpg is open
        assert len(watching.runs) == 1
        fh.write(data[len(data) // 2 :])
    run = watching.next_run(1, "the run after the file is closed")
    assert (run.summary.new, run.summary.failed, run.summary.ledger) == (2, 0, 0)


def test_the_index_home_inside_a_root_does_not_wake_it(root, tmp_path, tiny_encoder):
    settings = Settings.from_env(
        env={}, index=root / "my index", weights=str(TINY_BIRDER), workers=1
    )
    running = Running([root], settings, FAST, tiny_encoder)
    try:
        running.next_run(0, "the first build")
        shutil.copy(FLAT / "cat.jpg", root / "cat.jpg")
        running.next_run(1, "the run for cat.jpg")
        time.sleep(10 * FAST.settle)  # its own writes (catalog, FAISS, status) raise no run
        assert len(running.runs) == 2
    finally:
        running.stop()


def test_polling_where_events_do_not_arrive(root, settings, tiny_encoder):
    options = WatchOptions(**{**FAST.__dict__, "observer": "polling"})
    running = Running([root], settings, options, tiny_encoder)
    try:
        running.next_run(0, "the first build")
        shutil.copy(FLAT / "cat.jpg", root / "cat.jpg")
        run = running.next_run(1, "a run after a poll")
        assert (run.summary.new, run.summary.embedded) == (1, 1)
        [record] = watch_status.read_all(settings.index)
        assert record["roots"] == {str(root): "polling every 0.3 s"} and record["running"]
    finally:
        running.stop()
    [record] = watch_status.read_all(settings.index)
    assert record["state"] == "stopped" and not record["running"]
    assert record["last_run"]["new"] == 1


def test_a_watcher_waits_while_another_writer_holds_the_index(watching, root, settings):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from indexer.store.locking import WriterLock\n"
         "with WriterLock(sys.argv[1]):\n print('held', flush=True); sys.stdin.read()",
         str(settings.index)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        shutil.copy(FLAT / "cat.jpg", root / "cat.jpg")
        watching.until(lambda: any("this watcher waits" in n for n in watching.notes), "busy")
        assert len(watching.runs) == 1 and "another `index build`" in watching.notes[-1]
    finally:
        holder.communicate("")  # the other writer finishes
    run = watching.next_run(1, "the run once the lock is free")
    assert (run.summary.new, run.summary.images) == (1, 4)


def _watch_process(root: Path, index: Path) -> tuple[subprocess.Popen, list[dict]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", "watch", str(root), "--index", str(index),
         "--weights", str(TINY_BIRDER), "--workers", "1", "--settle", "0.3", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    lines: list[dict] = []
    reader = threading.Thread(target=lambda: lines.extend(map(json.loads, proc.stdout)))
    reader.daemon = True
    reader.start()
    return proc, lines


def test_two_watchers_on_one_index_do_not_corrupt_it(root, settings, tiny_encoder):
    proc, lines = _watch_process(root, settings.index)  # `index watch --json`, another process
    beside = Running([root], settings, FAST, tiny_encoder)  # and one here
    try:
        beside.next_run(0, "this process's first run")
        deadline = time.monotonic() + GUARD
        while not lines:  # the other one's first run
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        make_distinct_jpegs(root / "new", 20)
        beside.until(lambda: beside.runs[-1].summary.images == 23, "all 20 indexed here")
        while lines[-1]["images"] != 23:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        beside.stop()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(GUARD)
    assert code == 143 and "stopped watching" in proc.stderr.read()
    assert {"run", "trigger", "events", "new", "embedded", "images"} <= lines[0].keys()
    runs = lines + [r.as_dict() for r in beside.runs]
    assert sum(r["embedded"] for r in runs) == 23  # each picture embedded once, by one of them
    check_consistent(settings.index, 23)
    assert [r["state"] for r in watch_status.read_all(settings.index)] == ["stopped"] * 2


def test_watch_refuses_bad_options_and_typos_in_one_line(tmp_path):
    result = invoke("watch", tmp_path, "--index", tmp_path / "i", "--settle", "0")
    assert result.exit_code == 1 and result.output == (
        "error: --settle 0.0: use a number of seconds above 0\n"
    )
    result = invoke("watch", tmp_path / "nope", "--index", tmp_path / "i", "--weights",
                    TINY_BIRDER, "--device", "cpu")  # fmt: skip
    assert result.exit_code == 1
    assert result.output.endswith(f"error: {tmp_path / 'nope'}: no such file or folder\n")
    assert not (tmp_path / "i").exists()


def _index_page(index: Path, monkeypatch) -> list[str]:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PHOTO_INDEX_INDEX", str(index))
    monkeypatch.setenv("PHOTO_INDEX_WEIGHTS", str(TINY_BIRDER))
    monkeypatch.setenv("PHOTO_INDEX_DEVICE", "cpu")
    at = AppTest.from_file(str(ROOT / "search_ui" / "app.py"), default_timeout=60).run()
    at.switch_page("pages/status.py").run()
    assert not at.exception
    return [m.value for m in at.markdown]


def test_the_index_page_shows_the_watcher(watching, root, settings, monkeypatch):
    shutil.copy(FLAT / "cat.jpg", root / "cat.jpg")
    watching.next_run(1, "the run for cat.jpg")
    shown = _index_page(settings.index, monkeypatch)
    assert any(m.startswith("**Running** (watching since") for m in shown), shown
    assert any(f"watching `{root}` (events)" in m for m in shown)
    assert any("(changes, " in m and "1 new · 0 changed" in m for m in shown)
    watching.stop()
    shown = _index_page(settings.index, monkeypatch)
    assert any(m.startswith("**Not running**: stopped") for m in shown), shown


def test_status_files_that_are_not_ours_are_ignored(root, settings, tiny_encoder, monkeypatch):
    from indexer.build import build

    build([root], settings, encoder=tiny_encoder)
    folder = settings.index / watch_status.FOLDER
    folder.mkdir()
    (folder / "1.json").write_text("{not json")
    os.mkfifo(folder / "2.json")  # would block a plain open
    (folder / "3.json").write_text(json.dumps({"pid": 3, "pad": "x" * 300_000}))
    (folder / "5.json").symlink_to(folder / "4.json")
    odd = {"pid": 4, "state": "[x](http://e.invalid)", "runs": "$x$", "roots": ["a"],
           "last_run": {"seconds": "soon", "new": "<b>", "trigger": "`"}}  # fmt: skip
    (folder / "4.json").write_text(json.dumps(odd))
    assert [r["pid"] for r in watch_status.read_all(settings.index)] == [4]
    shown = _index_page(settings.index, monkeypatch)
    assert any("on host `?` (not checked)" in m for m in shown)
    assert not any("](http" in m for m in shown)


def test_serve_watch_runs_a_watcher_beside_the_ui(root, tmp_path):
    index = tmp_path / "index"
    proc = subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", "serve", "--watch", str(root), "--index",
         str(index), "--weights", str(TINY_BIRDER), "--device", "cpu", "--port",
         str(free_port())],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + GUARD
        while not any((r.get("last_run") or {}).get("images") == 3
                      for r in watch_status.read_all(index)):  # fmt: skip
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        [record] = watch_status.read_all(index)
        assert record["running"] and record["roots"] == {str(root): "events"}
        proc.send_signal(signal.SIGTERM)  # to `index serve` only, as `kill PID` does
        assert proc.wait(GUARD) == 143
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    [record] = watch_status.read_all(index)
    assert record["state"] == "stopped" and not record["running"]
    check_consistent(index, 3)
