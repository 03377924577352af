"""`index watch`: build once, then build again each time the roots change and the changes
settle, with one encoder loaded for the watcher's whole life.

Every run is an ordinary incremental `build()`: the same writer lock (a watcher waits while
another writer holds it), the same summary, the same guard for roots that are not there (a
root that vanishes is left out of the runs and watched for; its files stay indexed). Ctrl-C or
SIGTERM stop it the way they stop a build: the batch in flight is committed, FAISS saved.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.build import ProgressFn, build
from indexer.build.summary import BuildSummary
from indexer.build.vanished import unknown_root
from indexer.errors import (
    BuildError,
    IndexBusyError,
    SettingsError,
    UserError,
    describe_os_error,
)
from indexer.settings import Settings
from indexer.store.catalog import CATALOG_FILE, Catalog, CatalogError
from indexer.watch import status
from indexer.watch.changes import Batch, Changes
from indexer.watch.observers import MODES, Observed

MAX_BACKOFF = 600.0  # seconds between tries after an error (a full disk) at most
_SHOWN_WARNINGS = 20  # of one run's warnings, kept in the status file


@dataclass(frozen=True)
class WatchOptions:
    """When a run starts and how the roots are watched."""

    settle: float = 3.0  # seconds without a new event before a run (`--settle`)
    max_wait: float = 60.0  # a run starts at most this long after the first change
    observer: str = "auto"  # auto (polling on network file systems) | events | polling
    poll_interval: float = 30.0  # seconds between two polls of a polled root
    recheck: float = 5.0  # seconds between checks that the roots are (still) there
    retry: float = 5.0  # seconds between tries while another writer holds the index

    def validate(self) -> WatchOptions:
        """SettingsError naming the first option out of range."""
        for name, value in (("--settle", self.settle), ("--max-wait", self.max_wait),
                            ("--poll-interval", self.poll_interval), ("recheck", self.recheck),
                            ("retry", self.retry)):  # fmt: skip
            if not isinstance(value, int | float) or not value > 0:
                raise SettingsError(f"{name} {value!r}: use a number of seconds above 0")
        if self.observer not in MODES:
            raise SettingsError(f"--observer {self.observer!r}: use auto, events or polling")
        return self


@dataclass
class WatchRun:
    """One run of a watcher: its number, what started it, and the build's summary."""

    number: int
    trigger: str  # "start", "changes", "root back", "events lost", ...
    events: int  # file-system events behind it
    started_at: float
    summary: BuildSummary

    def as_dict(self) -> dict[str, Any]:
        """The build's `--json` summary plus `run`, `trigger`, `events`, `started_at`."""
        extra = {"run": self.number, "trigger": self.trigger, "events": self.events}
        return {**self.summary.as_dict(), **extra, "started_at": round(self.started_at, 3)}


@dataclass
class _Flags:
    """Build options: `reindex` and `retry_failed` apply to the first run only."""

    reindex: bool = False
    retry_failed: bool = False
    prune: bool = False
    runs: int = 0
    busy: bool = False  # the "index busy" line was printed for the current wait
    backoff: float = 0.0
    last: dict[str, Any] = field(default_factory=dict)


class Watcher:
    """Keeps an index current with its roots until `stop()` or a stop signal."""

    def __init__(
        self,
        roots: Iterable[str | Path],
        settings: Settings,
        options: WatchOptions | None = None,
        *,
        encoder: Any = None,
        reindex: bool = False,
        retry_failed: bool = False,
        prune: bool = False,
        on_run: Callable[[WatchRun], None] | None = None,
        on_note: Callable[[str], None] | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        self.roots = [os.path.abspath(os.path.expanduser(os.fspath(r))) for r in roots]
        self.settings = settings
        self.options = options or WatchOptions()
        self.encoder = encoder
        self.flags = _Flags(reindex, retry_failed, prune)
        self.on_run = on_run or (lambda _r: None)
        self.note = on_note or (lambda _m: None)
        self.progress = progress
        self.changes = Changes()
        self.started_at = time.time()
        self.observed = Observed(
            self.roots,
            self.changes,
            mode=self.options.observer,
            poll_interval=self.options.poll_interval,
            never=[os.fspath(settings.index)],
            excludes=settings.excludes,
            on_note=self.note,
        )

    def stop(self) -> None:
        """Ask the watcher to stop (from any thread): after the run in progress, if any."""
        self.changes.stop()

    def run(self) -> None:
        """Watch, build, repeat until stopped. Raises what a first build raises (bad options,
        weights, roots), and `interrupts.Interrupted` (result: the summary of a run that a
        signal cut short, or None) after Ctrl-C or SIGTERM."""
        self.settings.validate()
        self.options.validate()
        if typo := unknown_root(self.settings.index, self.roots):  # before loading anything
            raise BuildError(f"{typo}: no such file or folder")
        status.forget_gone(self.settings.index)
        try:
            self.observed.start()  # before the first build: nothing that lands is missed
            kinds = self.observed.describe().items()
            self.note("watching " + ", ".join(f"{r} ({k})" for r, k in kinds))
            if self.encoder is None:
                self.encoder = self._load_encoder()
            first = Batch(events=0, reasons={"start"})
            while not self.flags.runs and not self.changes.stopping:
                self._attempt(first)  # again while another writer holds the index
            while not self.changes.stopping:
                self._step()
        finally:
            self.observed.stop()
            self._status("stopped")

    # ------------------------------------------------------------------ the loop
    def _step(self) -> None:
        """Wait for changes (noticing roots gone and back meanwhile), let them settle, run."""
        for root in self.observed.recheck():
            self.note(f"{root}: back; watching it again")
        if not self.changes.wait_any(self.options.recheck):
            return
        self.changes.wait_settled(self.options.settle, self.options.max_wait)
        if self.changes.stopping:
            return
        batch = self.changes.take()
        if not self._attempt(batch):
            self.changes.put_back(batch)  # merged with what arrived meanwhile

    def _attempt(self, batch: Batch) -> bool:
        """One build over the roots that are there; False (after a pause) when the index was
        busy, or after the first run, an error the user can fix."""
        first = not self.flags.runs
        roots = self.roots if first else self.observed.present()
        if not roots:  # every root is gone: nothing to scan, every file stays indexed
            return True
        self._status("building", trigger=batch.trigger)
        started = time.time()
        try:
            summary = build(
                roots,
                self.settings,
                encoder=self.encoder,
                progress=self.progress if first else None,
                reindex=first and self.flags.reindex,
                retry_failed=first and self.flags.retry_failed,
                prune=self.flags.prune,
            )
        except KeyboardInterrupt as exc:  # the build saved its work: record it, then stop
            if getattr(exc, "result", None) is not None:
                self._record(batch, exc.result, started)
            raise
        except IndexBusyError as exc:
            self._wait_busy(str(exc))
            return False
        except Exception as exc:  # a full disk (OSError or SQLite's), a damaged catalog...
            if first or not self._wait_error(exc):
                raise
            return False
        self.flags.busy, self.flags.backoff = False, 0.0
        self._record(batch, summary, started)
        return True

    def _wait_busy(self, message: str) -> None:
        if not self.flags.busy:
            self.note(f"{message}; this watcher waits for it (trying every "
                      f"{self.options.retry:g} s)")  # fmt: skip
            self.flags.busy = True
        self._status("waiting", message=message)
        self.changes.pause(self.options.retry)

    def _wait_error(self, exc: BaseException) -> bool:
        """An error the user can fix (a full disk) is one line and a later try, at growing
        intervals (True); any other error stops the watcher (False)."""
        index = self.settings.index
        message = str(exc) if isinstance(exc, UserError) else describe_os_error(exc, index)
        if message is None:
            return False
        self.flags.backoff = min(MAX_BACKOFF, max(self.options.retry, self.flags.backoff * 2))
        self.note(f"error: {message}; trying again in {self.flags.backoff:g} s")
        self._status("error", message=message)
        self.changes.pause(self.flags.backoff)
        return True

    def _record(self, batch: Batch, summary: BuildSummary, started: float) -> None:
        self.flags.runs += 1
        run = WatchRun(self.flags.runs, batch.trigger, batch.events, started, summary)
        d = run.as_dict()
        keep = ("new", "changed", "moved", "deleted", "unchanged", "failed", "embedded",
                "images", "vectors", "seconds", "interrupted", "run", "trigger", "events",
                "started_at")  # fmt: skip
        self.flags.last = {k: d[k] for k in keep}
        self.flags.last["finished_at"] = time.time()
        self.flags.last["warnings"] = summary.warnings[:_SHOWN_WARNINGS]
        self._status("interrupted" if summary.interrupted else "watching")
        self.on_run(run)

    # ------------------------------------------------------------------ helpers
    def _status(self, state: str, **extra: Any) -> None:
        """The status file the Index page reads; a failure to write it never stops a run."""
        record = {"state": state, "since": time.time(), "started_at": self.started_at,
                  "roots": self.observed.describe(), "runs": self.flags.runs,
                  "last_run": self.flags.last or None, **extra}  # fmt: skip
        try:
            status.write(self.settings.index, record)
        except OSError:
            pass

    def _load_encoder(self) -> Any:
        """The encoder every run uses: --weights, else the ones the index was built with."""
        from indexer.build.run import load_build_encoder

        pinned = None
        if not self.settings.weights and (self.settings.index / CATALOG_FILE).exists():
            try:
                cat = Catalog(self.settings.index, readonly=True)
            except CatalogError:  # damaged or older: the first build says so, or upgrades it
                cat = None
            if cat is not None:
                try:
                    pinned = cat.get_meta("weights_path")
                finally:
                    cat.close()
        return load_build_encoder(self.settings, pinned)
