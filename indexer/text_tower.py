"""Which CLIP text tower answers an index's text queries, and whether it may: the user's
`--text-weights`, the build's own full-CLIP file, or the pinned default download; refused when
its width or its image projection's fingerprint says it is another CLIP than the index's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from indexer.errors import CheckpointError, SearchError
from indexer.files import printable_path
from indexer.settings import Settings


def load_text_tower(settings: Settings, build_weights: str | None, dim: int) -> Any:
    """`settings.text_weights`, else the build's weights if that file has a text tower too,
    else OpenAI's ViT-L/14 (downloaded once, sha256 checked) for an index of its width."""
    from indexer.encoder import weights as hub
    from indexer.encoder.text_encoder import load_text_encoder

    def load(path: str | Path, sha256: str | None = None) -> Any:
        return load_text_encoder(path, device=settings.device, dtype=settings.dtype, sha256=sha256)

    if settings.text_weights:
        return load(settings.text_weights)  # its own errors name the file
    if build_weights and os.path.exists(build_weights):
        try:
            return load(build_weights)
        except CheckpointError:
            pass
    if dim == hub.TEXT.dim:
        return load(hub.default_weights(settings.cache_dir, spec=hub.TEXT), hub.TEXT.sha256)
    raise SearchError(
        "text search needs a CLIP text tower: pass --text-weights PATH (a full-CLIP checkpoint: "
        "OpenAI ViT-L-14.pt, an open_clip state dict, or a Hugging Face CLIPModel folder); "
        f"the default, OpenAI's ViT-L/14, projects to {hub.TEXT.dim} dimensions and this index "
        f"holds {dim}"
    )


def check_text_source(encoder: Any, pinned: dict, dim: int, index: str | Path) -> str | None:
    """SearchError when a text tower cannot be the CLIP whose image tower the index pinned:
    another width, or another image projection beside it (fingerprint.py). None when it is
    that CLIP; a note when it cannot be told (a text-only file, an index built before
    fingerprints were recorded): the width matches, so it is used."""
    from indexer.encoder import weights as hub
    from indexer.encoder.fingerprint import same_projection

    text = encoder.identity
    if dim and text["dim"] != dim:
        raise SearchError(
            f"the text tower projects to {text['dim']} dimensions but the index at "
            f"{index} holds {dim}: use the same CLIP as the build"
        )
    pair = (pinned.get("weights_sha256"), text.get("weights_sha256"))
    if pair[0] == pair[1] or pair == (hub.IMAGE.sha256, hub.TEXT.sha256):
        return None  # one full-CLIP file, or the pinned default image and text files
    name = printable_path(os.fspath(encoder.weights_path or "the text weights"))
    same = same_projection(pinned.get("image_fingerprint"), text.get("image_fingerprint"))
    if same is False:
        raise SearchError(
            f"{name}: this text tower belongs to another CLIP than the index at {index} was "
            f"built with (the image projection beside it is not that of the index's encoder, "
            f"{pinned.get('architecture')}, weights {str(pinned.get('weights_sha256'))[:12]}): "
            "pass --text-weights with the full CLIP of the build's image weights"
        )
    if same:
        return None
    why = (
        "the file has no image tower to compare"
        if text.get("image_fingerprint") is None
        else "the index was built before encoder fingerprints were recorded; a build records it"
    )
    return f"{name}: not checked to be the CLIP the index was built with ({why}); its width matches"
