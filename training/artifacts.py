"""Saving trained heads as a model artifact the engine loads, with its model card.

An artifact carries a name, a version and the metrics it was accepted with; the engine reports
`name@version` in every index and search log, so any result can be traced to this card.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from engine.encoders.dual import DualHeads
from engine.fileops import staged_directory


def save_artifact(heads: DualHeads, out: Path, metrics: Mapping[str, Any], card: str) -> Path:
    """Write config, weights, metrics and card into `out`, replacing it only when complete.

    A query head (its config names an image space) is saved without the image head: that is
    its base's, and a copy could only drift from it.
    """
    with staged_directory(out) as staging:
        (staging / "config.json").write_text(
            json.dumps(heads.config.to_dict(), indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8")
        query_head = heads.config.image_space is not None
        state = {k: v.detach().contiguous() for k, v in heads.state_dict().items()
                 if not (query_head and k.startswith("image."))}
        save_file(state, str(staging / "heads.safetensors"))
        (staging / "metrics.json").write_text(
            json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (staging / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    return out


def metrics_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table; floats with three decimals."""
    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
