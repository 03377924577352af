"""What an index is pinned to: the encoder whose vectors it holds. Shared by the build (which
pins it) and search (which refuses another one); imports nothing heavy."""

from __future__ import annotations

IDENTITY_KEYS = ("weights_sha256", "architecture", "preprocess", "dim")


def encoder_identity_changed(pinned: dict | None, identity: dict) -> bool:
    """Is `identity` a different encoder than the one the index was built with?"""
    if not pinned:
        return False
    return any(pinned.get(k) != identity.get(k) for k in IDENTITY_KEYS)
