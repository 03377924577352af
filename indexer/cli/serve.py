"""`index serve`: start the Streamlit app in `search_ui/` on an index (127.0.0.1 unless told).

The app gets the index and weights through PHOTO_INDEX_* variables and the upload cap through
Streamlit's own `--server.maxUploadSize`, so the browser refuses big files before they arrive.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from indexer.cli.common import IndexOpt
from indexer.cli.milvus import CollectionOpt, MilvusOpt
from indexer.interrupts import run_child, spawn, stop_child
from indexer.settings import Settings
from indexer.text import printable

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "search_ui" / "app.py"
WATCHER_GRACE_S = 120.0  # a stopped watcher commits its batch and saves FAISS: wait that long


def streamlit_command(host: str, port: int, max_upload_mb: int) -> list[str]:
    """The `streamlit run` command line for the app (headless, no telemetry, no file watcher).

    Kept apart from `serve_command` so tests can check it without starting a server.
    """
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", host, "--server.port", str(port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--server.maxUploadSize", str(max_upload_mb), "--server.fileWatcherType", "none",
        "--server.runOnSave", "false", "--client.toolbarMode", "minimal",
        "--global.developmentMode", "false",
    ]  # fmt: skip


def watcher_command(paths: list[Path]) -> list[str]:
    """The `index watch` command line `serve --watch` runs beside the UI (settings come
    through the same PHOTO_INDEX_* environment as the app's)."""
    roots = [str(p.expanduser().absolute()) for p in paths]
    return [sys.executable, "-m", "indexer.cli", "watch", "--quiet", "--", *roots]


def serve_environment(settings: Settings) -> dict[str, str]:
    """The environment that tells the app which index, weights and device to use."""
    env = dict(os.environ)
    env["PHOTO_INDEX_INDEX"] = str(settings.index.absolute())
    for name, value in (("WEIGHTS", settings.weights), ("TEXT_WEIGHTS", settings.text_weights)):
        if value:
            weights = Path(value).expanduser()
            env[f"PHOTO_INDEX_{name}"] = (
                str(weights.absolute()) if weights.exists() else str(weights)
            )
    env["PHOTO_INDEX_DEVICE"] = settings.device
    if settings.milvus:  # the app answers from this collection (its token: MILVUS_TOKEN)
        env["PHOTO_INDEX_MILVUS"] = settings.milvus
        env["PHOTO_INDEX_MILVUS_COLLECTION"] = settings.milvus_collection
    return env


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_command(
    index: IndexOpt = None,
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8501,
    host: Annotated[
        str, typer.Option(help="Address to bind; 0.0.0.0 exposes the UI to the network.")
    ] = "127.0.0.1",
    weights: Annotated[
        str | None,
        typer.Option(
            help="Weights for query images [env PHOTO_INDEX_WEIGHTS; default: the build's]"
        ),
    ] = None,
    text_weights: Annotated[
        str | None,
        typer.Option(
            help="Full-CLIP checkpoint for text queries [env PHOTO_INDEX_TEXT_WEIGHTS; default: "
            "the build's weights if they hold a text tower, else OpenAI's ViT-L/14]"
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(help="auto | cpu | cuda | cuda:N [env PHOTO_INDEX_DEVICE; default auto]"),
    ] = None,
    max_upload_mb: Annotated[
        int, typer.Option(help="Largest query image accepted, in MB.", min=1)
    ] = 20,
    milvus: MilvusOpt = None,
    collection: CollectionOpt = None,
    watch: Annotated[
        list[Path] | None,
        typer.Option(
            "--watch",
            help="Keep the index current with this folder while serving (an `index watch` "
            "beside the UI; repeatable).",
        ),
    ] = None,
) -> None:
    """Open the browser UI (search by image, duplicates, index status) on http://HOST:PORT."""
    settings = Settings.from_env(
        index=index,
        weights=weights,
        text_weights=text_weights,
        device=device,
        milvus=milvus,
        milvus_collection=collection,
    )
    env = serve_environment(settings)
    _say_before_serving(settings, host)
    home = printable(env["PHOTO_INDEX_INDEX"])
    typer.echo(f"photo-index UI on http://{host}:{port} (index {home})")
    watcher = None
    if watch:  # its own process group: we stop it once the UI is down, it saves and exits
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        watcher = spawn(watcher_command(watch), env, own_group=True)
    try:  # SIGTERM/SIGINT/SIGHUP stop Streamlit too; exit 143/130/129 after them
        code = run_child(streamlit_command(host, port, max_upload_mb), env)
    finally:
        if watcher is not None:
            stop_child(watcher, WATCHER_GRACE_S)
    raise typer.Exit(code)


def _say_before_serving(settings: Settings, host: str) -> None:
    """A note when there is no index yet (the UI says how to build one), a warning when the UI
    is reachable from the network."""
    from indexer.store.catalog import CATALOG_FILE

    if not (settings.index / CATALOG_FILE).exists():
        typer.echo(
            f"note: no index at {printable(settings.index)} yet; the UI says how to build one "
            f"(index build PATH --index {printable(settings.index)})",
            err=True,
        )
    if not _is_loopback(host):
        typer.echo(f"warning: serving on {host}: anyone who can reach it can search", err=True)
