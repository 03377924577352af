"""What an index is pinned to: the encoder whose vectors it holds (the build pins it, search
refuses another one) and the hash that names its contents; imports nothing heavy."""

from __future__ import annotations

from pathlib import Path

from indexer.errors import BuildError

IDENTITY_KEYS = ("weights_sha256", "architecture", "preprocess", "dim")


def encoder_identity_changed(pinned: dict | None, identity: dict) -> bool:
    """Is `identity` a different encoder than the one the index was built with?"""
    if not pinned:
        return False
    return any(pinned.get(k) != identity.get(k) for k in IDENTITY_KEYS)


def check_content_hash(recorded: str | None, ours: str, index_dir: str | Path) -> None:
    """BuildError when the index names its contents by another hash than `ours` (its moves,
    copies and duplicates would all look new); None recorded: not pinned yet."""
    if recorded is not None and recorded != ours:
        raise BuildError(
            f"{index_dir}: this index names its contents by {recorded} hashes, this photo-index "
            f"by {ours}; build a new index with --index"
        )
