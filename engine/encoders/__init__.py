"""Encoders behind one protocol, chosen by a model spec string.

Specs:
- `dual:default` (or `default`): the packaged dual encoder, the offline default.
- `dual:/path/to/artifact`: another trained dual-encoder artifact directory.
- `open_clip:ARCH:WEIGHTS`: any open_clip model; WEIGHTS is a checkpoint path, a pretrained
  tag (online machines) or `random` (tests). ARCH may be `local-dir:/dir`, `hf-hub:org/repo`
  or a path to a model config JSON.

Query heads (dual encoders only, `query_head`): `default` uses the packaged MiniLM query head
when it was trained for the chosen base (the packaged base: yes), `full` the base's own text
head (MiniLM and e5 together: slower, a little more accurate), or a path to a query-head
artifact. A query head reads Russian through the word gloss alone unless `russian_e5` is set.
"""

from __future__ import annotations

from pathlib import Path

from engine.encoders.base import Encoder, encode_images

DEFAULT_MODEL_SPEC = "dual:default"
DEFAULT_QUERY_HEAD = "default"
FULL_TEXT_HEAD = "full"

__all__ = ["DEFAULT_MODEL_SPEC", "DEFAULT_QUERY_HEAD", "FULL_TEXT_HEAD", "Encoder",
           "ModelSpecError", "encode_images", "load_encoder"]


class ModelSpecError(ValueError):
    """A model spec string that names no usable model."""


def load_encoder(spec: str = DEFAULT_MODEL_SPEC, query_head: str = DEFAULT_QUERY_HEAD,
                 russian_e5: bool = False) -> Encoder:
    """Build the encoder a spec names; raises `ModelSpecError` with what to fix.

    `russian_e5`: Russian queries through a query head also read e5 and blend in the base's
    own text head (the weight the query head stores); slower, see `DualEncoder.russian_blend`.
    """
    from engine.encoders.dual import DEFAULT_ARTIFACT, DualEncoder, ModelArtifactError
    from engine.encoders.openclip import OpenClipEncoder, OpenClipSpecError

    kind, _, rest = spec.strip().partition(":")
    try:
        if kind in ("default", "dual"):
            artifact = DEFAULT_ARTIFACT if rest in ("", "default") else Path(rest)
            if not artifact.is_dir():
                raise ModelSpecError(f"dual-encoder artifact directory not found: {artifact}")
            return DualEncoder(artifact, query_head=_query_head_dir(artifact, query_head),
                               russian_e5=russian_e5)
        if kind == "open_clip":
            arch, weights = _split_open_clip(rest)
            return OpenClipEncoder(arch, weights)
    except (ModelArtifactError, OpenClipSpecError) as error:
        raise ModelSpecError(str(error)) from error
    raise ModelSpecError(f"unknown model spec {spec!r}; use dual:default, dual:/path or "
                         "open_clip:ARCH:WEIGHTS")


def _query_head_dir(artifact: Path, query_head: str) -> Path | None:
    """The query-head artifact to load beside the dual encoder `artifact`, if any."""
    from engine.encoders.dual import DEFAULT_QUERY_HEAD as PACKAGED
    from engine.encoders.dual import read_config

    if query_head == FULL_TEXT_HEAD:
        return None
    if query_head == DEFAULT_QUERY_HEAD:
        if not PACKAGED.is_dir():
            return None
        packaged_for = read_config(PACKAGED).image_space
        return PACKAGED if packaged_for == read_config(artifact).identity else None
    path = Path(query_head)
    if not path.is_dir():
        raise ModelSpecError(f"query-head artifact directory not found: {path}")
    return path


def _split_open_clip(rest: str) -> tuple[str, str | None]:
    """Split `ARCH[:WEIGHTS]` where ARCH itself may contain a schema colon."""
    for schema in ("local-dir:", "hf-hub:"):
        if rest.startswith(schema):
            return rest, None
    arch, sep, weights = rest.partition(":")
    if not arch:
        raise ModelSpecError("open_clip spec needs an architecture: open_clip:ARCH:WEIGHTS")
    return arch, (weights if sep else None)
