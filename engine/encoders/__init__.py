"""Encoders behind one protocol, chosen by a model spec string.

Specs:
- `dual:default` (or `default`): the packaged dual encoder, the offline default.
- `dual:/path/to/artifact`: another trained dual-encoder artifact directory.
- `open_clip:ARCH:WEIGHTS`: any open_clip model; WEIGHTS is a checkpoint path, a pretrained
  tag (online machines) or `random` (tests). ARCH may be `local-dir:/dir`, `hf-hub:org/repo`
  or a path to a model config JSON.
"""

from __future__ import annotations

from pathlib import Path

from engine.encoders.base import Encoder, encode_images

DEFAULT_MODEL_SPEC = "dual:default"

__all__ = ["DEFAULT_MODEL_SPEC", "Encoder", "ModelSpecError", "encode_images", "load_encoder"]


class ModelSpecError(ValueError):
    """A model spec string that names no usable model."""


def load_encoder(spec: str = DEFAULT_MODEL_SPEC) -> Encoder:
    """Build the encoder a spec names; raises `ModelSpecError` with what to fix."""
    from engine.encoders.dual import DEFAULT_ARTIFACT, DualEncoder, ModelArtifactError
    from engine.encoders.openclip import OpenClipEncoder, OpenClipSpecError

    kind, _, rest = spec.strip().partition(":")
    try:
        if kind in ("default", "dual") and rest in ("", "default"):
            return DualEncoder(DEFAULT_ARTIFACT)
        if kind == "dual":
            artifact = Path(rest)
            if not artifact.is_dir():
                raise ModelSpecError(f"dual-encoder artifact directory not found: {artifact}")
            return DualEncoder(artifact)
        if kind == "open_clip":
            arch, weights = _split_open_clip(rest)
            return OpenClipEncoder(arch, weights)
    except (ModelArtifactError, OpenClipSpecError) as error:
        raise ModelSpecError(str(error)) from error
    raise ModelSpecError(f"unknown model spec {spec!r}; use dual:default, dual:/path or "
                         "open_clip:ARCH:WEIGHTS")


def _split_open_clip(rest: str) -> tuple[str, str | None]:
    """Split `ARCH[:WEIGHTS]` where ARCH itself may contain a schema colon."""
    for schema in ("local-dir:", "hf-hub:"):
        if rest.startswith(schema):
            return rest, None
    arch, sep, weights = rest.partition(":")
    if not arch:
        raise ModelSpecError("open_clip spec needs an architecture: open_clip:ARCH:WEIGHTS")
    return arch, (weights if sep else None)
