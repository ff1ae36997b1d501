"""Any open_clip model behind the engine's encoder protocol.

Weights come from a local checkpoint file (offline machines), from open_clip's own
`local-dir:` / `hf-hub:` schemas, from a pretrained tag (machines that are online), or are left
random (`random`, for tests only). The architecture may be a built-in name or a path to a model
config JSON, which is registered on the fly, so custom or tiny architectures need no code.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.encoders.towers import l2_normalize
from engine.images import ImagePrep

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


class OpenClipSpecError(ValueError):
    """The model spec names weights or a config that cannot be found."""


def _looks_like_path(weights: str) -> bool:
    return "/" in weights or weights.endswith(CHECKPOINT_SUFFIXES) or weights.startswith(".")


class OpenClipEncoder:
    """CLIP-style encoder from open_clip; spec `open_clip:ARCH[:WEIGHTS]`.

    WEIGHTS is a checkpoint path, a pretrained tag, or `random`. ARCH may be `local-dir:/dir`
    or `hf-hub:org/repo` (weights come with it), or a path to a config `.json`.
    """

    def __init__(self, arch: str, weights: str | None = None, device: str = "cpu") -> None:
        import open_clip

        self._lock = threading.Lock()
        self.arch = arch
        self.weights = weights
        model_name = arch
        if arch.endswith(".json"):
            config = Path(arch)
            if not config.is_file():
                raise OpenClipSpecError(f"open_clip model config not found: {config}")
            open_clip.add_model_config(config)
            model_name = config.stem
        pretrained: str | None = None
        load_weights = True
        if arch.startswith(("local-dir:", "hf-hub:")):
            if arch.startswith("local-dir:") and not Path(arch[len("local-dir:"):]).is_dir():
                raise OpenClipSpecError(f"open_clip model directory not found: "
                                        f"{arch[len('local-dir:'):]}")
        elif weights is None or weights == "random":
            load_weights = False
        elif _looks_like_path(weights):
            if not Path(weights).is_file():
                raise OpenClipSpecError(f"open_clip checkpoint not found: {weights}")
            pretrained = weights
        else:
            pretrained = weights  # a pretrained tag: open_clip downloads it (needs network)
        if weights is None and not arch.startswith(("local-dir:", "hf-hub:")):
            raise OpenClipSpecError(
                f"open_clip:{arch} needs weights: open_clip:{arch}:/path/to/checkpoint.pt, "
                f"open_clip:{arch}:<pretrained tag> (online) or open_clip:{arch}:random")
        self.model: Any = open_clip.create_model(
            model_name, pretrained=pretrained, load_weights=load_weights, device=device,
            pretrained_text=False, pretrained_image=False,
        ).eval()
        self.tokenizer: Any = open_clip.get_tokenizer(model_name)
        visual = self.model.visual
        size = visual.image_size
        self._size = int(size[0] if isinstance(size, tuple | list) else size)
        cfg = getattr(visual, "preprocess_cfg", {}) or {}
        self._mean = torch.tensor(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)).view(1, 3, 1, 1)
        self._std = torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD)).view(1, 3, 1, 1)
        with torch.inference_mode():
            probe = self.model.encode_text(self.tokenizer(["probe"]))
        self._dim = int(probe.shape[-1])

    @property
    def name(self) -> str:
        if self.weights and _looks_like_path(self.weights):
            path = Path(self.weights)
            return f"open_clip:{self.arch}:{path.name}:{path.stat().st_size}"
        return f"open_clip:{self.arch}:{self.weights or 'bundled'}"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def image_prep(self) -> ImagePrep:
        return ImagePrep(self._size, "center_crop")

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock, torch.inference_mode():
            tokens = self.tokenizer(list(texts))
            return l2_normalize(self.model.encode_text(tokens).float().numpy())

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0
        x = (x - self._mean) / self._std
        with self._lock, torch.inference_mode():
            return l2_normalize(self.model.encode_image(x).float().numpy())
