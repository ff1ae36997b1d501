"""End-to-end engine benchmark through the real CLI: quality, Russian parity, speed, memory.

Quality is measured the way a user meets the engine: photos indexed from their folder with
`python -m engine index`, queries answered by `python -m engine search --json`, the legal
filter on. Recall is computed over the queries the filter does not refuse; refusals are
counted apart. Latency is measured in-process on indexes of 1k/10k/100k photos built from real
embeddings (repeated with small noise beyond the real ones).
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.metrics import random_ranking_report, retrieval_report

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class QuerySet:
    """Queries with the one relevant photo each (a path relative to the photo folder)."""

    name: str
    texts: list[str]
    targets: list[str]


def link_photos(sources: Sequence[Path], folder: Path) -> Path:
    """A folder of symbolic links to `sources` (the shared data is never copied)."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in sources:
        link = folder / source.name
        if not link.exists():
            link.symlink_to(source.resolve())
    return folder


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", ""))
                                        if p)
    return env


def cli_index(photo_dir: Path, index_dir: Path, model: str | None = None) -> dict[str, float]:
    """Run `python -m engine index`; wall seconds, embedding rate, the child's peak RSS."""
    command = [sys.executable, "-m", "engine", "index", str(photo_dir), "--index",
               str(index_dir), "--quiet"]
    if model:
        command += ["--model", model]
    started = time.perf_counter()
    out = subprocess.run(command, check=True, env=_env(), cwd=REPO_ROOT, capture_output=True,
                         text=True).stdout
    rate = re.search(r"\(([0-9.]+) photos/s\)", out)
    return {"seconds": time.perf_counter() - started, "peak_rss_mb": _children_peak_rss_mb(),
            "photos_per_s": float(rate.group(1)) if rate else float("nan")}


def cli_search(index_dir: Path, texts: Sequence[str], k: int) -> list[dict[str, Any]]:
    """Run `python -m engine search --queries FILE --json`; one parsed object per query."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as f:
        f.write("\n".join(t.replace("\n", " ") for t in texts) + "\n")
        queries_file = f.name
    try:
        out = subprocess.run(
            [sys.executable, "-m", "engine", "search", "--index", str(index_dir), "--queries",
             queries_file, "--json", "-k", str(k)],
            check=True, env=_env(), cwd=REPO_ROOT, capture_output=True, text=True).stdout
    finally:
        os.unlink(queries_file)
    results = [json.loads(line) for line in out.splitlines() if line.strip()]
    if len(results) != len(texts):
        raise RuntimeError(f"expected {len(texts)} results, got {len(results)}")
    return results


def score_results(results: Sequence[dict[str, Any]], targets: Sequence[str], k: int
                  ) -> dict[str, Any]:
    """Recall@1/5/10 and MRR over non-refused queries; a target beyond `k` counts as rank k."""
    ranks = []
    refused = 0
    for result, target in zip(results, targets, strict=True):
        if result["blocked"]:
            refused += 1
            continue
        photos = [r["photo"] for r in result["results"]]
        ranks.append(photos.index(target) if target in photos else k)
    report: dict[str, Any] = retrieval_report(np.array(ranks))
    report["refused"] = refused
    return report


def blocked_flags(results: Sequence[dict[str, Any]]) -> list[bool]:
    return [bool(r["blocked"]) for r in results]


def _children_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def self_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_index(real: np.ndarray, size: int, root: Path, model: str, seed: int = 0) -> Path:
    """An index of `size` rows: the real embeddings, then noisy copies of them, renormalised."""
    from engine.index import FORMAT_VERSION, write_generation

    rng = np.random.default_rng(seed)
    reps = int(np.ceil(size / len(real)))
    matrix = np.concatenate([real] * reps)[:size].astype(np.float32)
    if size > len(real):
        noise = rng.normal(0, 0.05, size=(size - len(real), real.shape[1])).astype(np.float32)
        matrix[len(real):] += noise
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    manifest = {"format": FORMAT_VERSION, "model": model, "model_spec": None,
                "dim": int(real.shape[1]), "photo_dir": str(root / "photos"),
                "photos": [{"path": f"p{i:07d}.jpg", "size": 0, "mtime_ns": 0}
                           for i in range(size)], "skipped": []}
    write_generation(root, manifest, matrix)
    return root


def latency_profile(engine: Any, queries: Sequence[str], k: int = 10, repeats: int = 2
                    ) -> dict[str, float]:
    """p50/p95 wall milliseconds of `engine.search` (legal check + encode + top-k)."""
    for text in queries[:3]:
        engine.search(text, k=k)  # warm up towers and caches
    timings = []
    for _ in range(repeats):
        for text in queries:
            started = time.perf_counter()
            engine.search(text, k=k)
            timings.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": float(np.percentile(timings, 50)),
            "p95_ms": float(np.percentile(timings, 95)), "n": float(len(timings))}


def random_baseline(n_queries: int, n_photos: int) -> dict[str, float]:
    return random_ranking_report(n_queries, n_photos)
