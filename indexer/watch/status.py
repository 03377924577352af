"""What a watcher tells the Index page: one small JSON file per watcher process in
`<index>/watchers/PID.json`, rewritten atomically when its state changes (never while idle).

Whether it is running is not taken on its word: the process must still exist on this host.
A watcher removes, when it starts, the files of watchers that are gone.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

from indexer import atomic
from indexer.atomic import write_atomic
from indexer.store import homefiles
from indexer.store.catalog import CATALOG_FILE

FOLDER = "watchers"
_NAME = re.compile(r"[0-9]{1,10}\.json")
_MAX_BYTES = 256 * 1024  # a status file is a few KB; anything bigger is not ours


def status_path(index: str | Path, pid: int | None = None) -> Path:
    """`<index>/watchers/PID.json` (this process's by default)."""
    return Path(index) / FOLDER / f"{os.getpid() if pid is None else pid}.json"


def write(index: str | Path, state: dict[str, Any]) -> None:
    """Record this watcher's state, once the index exists (a first build creates it)."""
    if not (Path(index) / CATALOG_FILE).exists():
        return
    record = {"pid": os.getpid(), "host": socket.gethostname(), "updated_at": time.time(), **state}
    target = status_path(index)
    homefiles.make_folders(index, target)  # a real folder of the index, never a link
    write_atomic(target, json.dumps(record))


def read_all(index: str | Path) -> list[dict[str, Any]]:
    """Every watcher's last record, newest first, each with `running` (its process is alive
    on this host and it has not said it stopped) and `here` (it ran on this host)."""
    folder = Path(index) / FOLDER
    try:
        names = [n for n in os.listdir(folder) if _NAME.fullmatch(n)]
    except OSError:
        return []
    out = [r for r in (_read(Path(index), folder / n) for n in names) if r is not None]
    out.sort(key=lambda r: r.get("updated_at", 0), reverse=True)
    return out


def forget_gone(index: str | Path) -> None:
    """Remove the records of watchers on this host whose process is gone."""
    for record in read_all(index):
        if record["here"] and not atomic.pid_alive(record["pid"]):
            try:
                os.unlink(status_path(index, record["pid"]))
            except OSError:
                pass


def _read(index: Path, path: Path) -> dict[str, Any] | None:
    """One record, or None when it is not a small regular file of the index holding our JSON
    (no link on the way, no FIFO or device: `homefiles`)."""
    try:
        data = json.loads(homefiles.read_bytes(index, path, _MAX_BYTES))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return None
    data["here"] = data.get("host") == socket.gethostname()
    alive = data["here"] and atomic.pid_alive(data["pid"])
    data["running"] = alive and data.get("state") != "stopped"
    return data
