"""`index serve`: start the Streamlit app on an index (binds to 127.0.0.1 unless told)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from indexer.settings import Settings

APP = Path(__file__).resolve().parents[1] / "search_ui" / "app.py"


def serve_command(
    index: Annotated[Path | None, typer.Option("--index", help="Index folder.")] = None,
    port: Annotated[int, typer.Option(help="Port.")] = 8501,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes it.")] = "127.0.0.1",
    weights: Annotated[str | None, typer.Option(help="Weights (default: the build's).")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda")] = None,
    max_upload_mb: Annotated[int, typer.Option(help="Largest accepted upload.")] = 20,
) -> None:
    """Open the browser UI (search, duplicates, index status) on http://HOST:PORT."""
    settings = Settings.from_env(index=index, weights=weights, device=device)
    env = dict(os.environ)
    env["PHOTO_INDEX_INDEX"] = str(settings.index.absolute())
    env["PHOTO_INDEX_MAX_UPLOAD_MB"] = str(max_upload_mb)
    if settings.weights:
        env["PHOTO_INDEX_WEIGHTS"] = str(Path(settings.weights).absolute())
    if settings.device != "auto":
        env["PHOTO_INDEX_DEVICE"] = settings.device
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", host, "--server.port", str(port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--server.maxUploadSize", str(max_upload_mb), "--server.fileWatcherType", "none",
    ]  # fmt: skip
    typer.echo(f"photo-index UI on http://{host}:{port} (index {env['PHOTO_INDEX_INDEX']})")
    raise typer.Exit(subprocess.call(cmd, env=env))
