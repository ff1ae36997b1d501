"""`make bench`: photos of children never shown — the leak test and the recall it costs.

On the seed test set (the customer's 100 test photos as delivered, 500 queries) with the
packaged default model and child detector, through `SearchEngine`:

- leak rate: over every query the legal filter does not refuse, the share of the top-10 shown
  photos whose own Flickr8k captions mention a child (the weak label); must be <= 1%;
- hidden share: photos the filter excludes, of the collection;
- Recall@5 on the non-refused queries whose target photo is allowed, filtered vs unfiltered
  engine on the same queries; must not drop by more than 3 points (it cannot drop: removing
  photos only moves an allowed target up; measured anyway);
- photo queries: how many of the seed photos, sent as query photos, are refused.

The same figures on the Flickr8k TEST split (1000 photos, all 5000 captions as queries, from
the tower feature cache `FEATURE_CACHE`, default .cache/features) are printed, not asserted.
Needs the shared data (`SHARED_DATA`, default ../shared/data) and the trained default model
and detector; skipped without them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from engine.child_filter import PACKAGED_DETECTOR, ChildFilter, build_child_filter
from engine.encoders.base import Encoder
from engine.encoders.dual import DEFAULT_ARTIFACT
from engine.index import PhotoIndex, update_index
from engine.legal import LegalFilter
from engine.search import SearchEngine
from training.flickr8k import Flickr8k
from training.seed_data import load_test_queries

pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]

SHARED = Path(os.environ.get("SHARED_DATA", "../shared/data"))
CACHE = Path(os.environ.get("FEATURE_CACHE", ".cache/features"))
K = 10


@pytest.fixture(scope="module")
def shared() -> Path:
    if not (SHARED / "seed").is_dir() or not (SHARED / "flickr8k").is_dir():
        pytest.skip(f"shared data not found at {SHARED} (set SHARED_DATA)")
    if not (DEFAULT_ARTIFACT / "config.json").exists():
        pytest.skip("the packaged default model is not trained yet")
    if not (PACKAGED_DETECTOR / "detector.json").exists():
        pytest.skip("the packaged child detector is not trained yet")
    return SHARED


def _measure(shown: Sequence[Sequence[str]], unfiltered: Sequence[Sequence[str]],
             targets: Sequence[str], refused: Sequence[bool], child: dict[str, bool],
             excluded: set[str]) -> dict[str, float]:
    """Leak rate, Recall@5 filtered vs unfiltered on allowed targets, over allowed queries."""
    leaked = total = 0
    filtered_hits = unfiltered_hits = allowed_targets = 0
    for photos, plain, target, blocked in zip(shown, unfiltered, targets, refused, strict=True):
        if blocked:
            continue
        assert not excluded & set(photos), "a flagged photo was returned"
        total += len(photos)
        leaked += sum(child[p] for p in photos)
        if target not in excluded:
            allowed_targets += 1
            filtered_hits += target in photos[:5]
            unfiltered_hits += target in plain[:5]
    return {"queries": float(sum(not r for r in refused)), "shown": float(total),
            "leaked": float(leaked), "leak_rate": leaked / total if total else 0.0,
            "allowed_targets": float(allowed_targets),
            "r5_filtered": filtered_hits / allowed_targets if allowed_targets else float("nan"),
            "r5_unfiltered": unfiltered_hits / allowed_targets if allowed_targets else
            float("nan")}


def _line(name: str, m: dict[str, float], hidden: float) -> str:
    return (f"{name:<28} hidden {hidden:6.1%}  leak {int(m['leaked']):4d}/{int(m['shown']):5d} "
            f"= {m['leak_rate']:6.2%}  R@5 allowed targets {m['r5_filtered']:.3f} vs "
            f"unfiltered {m['r5_unfiltered']:.3f} (n={int(m['allowed_targets'])}, "
            f"{int(m['queries'])} non-refused queries)")


def _cache_ready(shared: Path, encoder: Encoder) -> bool:
    """Whether the feature cache holds every tower of `encoder` for all Flickr8k photos and
    captions (computing them here would take hours on a CPU)."""
    from training.dual_encoder import FeatureStore
    from training.features import FeatureCache, _digest

    config = getattr(encoder, "config", None)
    if config is None:
        return False
    store = FeatureStore(Flickr8k(shared.resolve() / "flickr8k"), FeatureCache(CACHE))
    photos = _digest([str(store.data.images_dir / n) for n in store.all_images])
    texts = _digest(list(store.all_texts))
    return (all((CACHE / f"image-{t}-orig-{photos}.npz").is_file()
                for t in config.image_towers)
            and all((CACHE / f"text-{t}-{texts}.npz").is_file() for t in config.text_towers))


def _flickr_test_lines(shared: Path, encoder: Encoder, child_filter: ChildFilter,
                       legal: LegalFilter, child: dict[str, bool]) -> list[str]:
    from training.child_detector import embed_flickr

    if not _cache_ready(shared, encoder):
        return [f"Flickr8k TEST: skipped (no tower features cached under {CACHE}; set "
                "FEATURE_CACHE)"]
    flickr = embed_flickr(shared.resolve(), encoder, CACHE)
    data = Flickr8k(shared / "flickr8k")
    position = {n: i for i, n in enumerate(flickr.names)}
    rows = np.array([position[n] for n in data.split("test")])
    photos = flickr.photos[rows]
    mask = child_filter.flags(child_filter.scores(photos))
    queries = np.flatnonzero(np.isin(flickr.caption_photo, rows))
    local = {int(r): i for i, r in enumerate(rows)}
    names = [flickr.names[r] for r in rows]
    refused = [not legal.check_query(flickr.captions[q]).allowed for q in queries]
    sims = flickr.caption_embeddings[queries] @ photos.T
    plain = np.argsort(-sims, axis=1, kind="stable")[:, :K]
    shown = np.argsort(-np.where(mask[None, :], -np.inf, sims), axis=1, kind="stable")[:, :K]
    test = _measure([[names[i] for i in row] for row in shown],
                    [[names[i] for i in row] for row in plain],
                    [names[local[int(flickr.caption_photo[q])]] for q in queries], refused,
                    child, {names[i] for i in np.flatnonzero(mask)})
    return [_line("Flickr8k TEST (1000 photos)", test, float(mask.mean())),
            f"{'':<28} (all 5000 captions as queries; embeddings from the feature cache, "
            f"probe check {flickr.check})"]


def test_child_filter_benchmark(shared: Path, tmp_path: Path) -> None:
    from engine.encoders import load_encoder

    encoder = load_encoder("dual:default")
    child_filter = build_child_filter(encoder.name, encoder=lambda: encoder)
    assert child_filter.detector is not None and child_filter.detector.kind != "zero-shot", \
        "the packaged detector must be the one trained for the packaged model"
    legal = LegalFilter.default()
    data = Flickr8k(shared / "flickr8k")
    captions = data.captions()
    child = {n: any(legal.mentions_children(c) for c in caps) for n, caps in captions.items()}
    lines = ["", "== Child filter benchmark: default model + packaged detector ==",
             f"filter {child_filter.version}"]

    # Seed test set: the customer's photos as delivered, the engine end to end.
    seed_index = tmp_path / "seed-index"
    update_index(shared / "seed" / "test_images", seed_index, encoder, progress=False,
                 child_filter=child_filter)
    index = PhotoIndex.open(seed_index)
    engine = SearchEngine(encoder, index, legal, child_filter)
    excluded = {index.paths[r] for r in np.flatnonzero(engine.exclusion().mask)}
    queries = load_test_queries(shared / "seed")
    # All 500 query vectors in one batch (one e5 call per query takes minutes on a busy CPU);
    # the filtered ranking is the engine's own (`PhotoIndex.ranked` with the engine's
    # exclusion mask), and every 10th query also goes through `SearchEngine.search` end to end.
    vectors = encoder.encode_texts([q.text for q in queries])
    mask = engine.exclusion().mask
    refused = [not legal.check_query(q.text).allowed for q in queries]
    shown = [[index.paths[r.row] for r in index.ranked(v, K, exclude=mask).rows]
             for v in vectors]
    plain_results = [[index.paths[r.row] for r in index.ranked(v, K).rows] for v in vectors]
    results = [engine.search(q.text, k=K) for q in queries[::10]]
    agree = 0
    for result, expected, blocked in zip(results, shown[::10], refused[::10], strict=True):
        assert result.blocked == blocked
        assert not excluded & {h.photo for h in result.hits}
        agree += [h.photo for h in result.hits] == ([] if blocked else expected)
    seed = _measure(shown, plain_results, [q.image for q in queries], refused, child, excluded)
    hidden = len(excluded) / len(index)
    lines.append(_line("seed test (100 photos)", seed, hidden))
    withheld = [r.withheld for r in results if not r.blocked]
    lines.append(f"{'':<28} withheld per query ({len(withheld)} searched end to end): mean "
                 f"{np.mean(withheld):.1f}, max {max(withheld)}; same top-{K} as the batch "
                 f"path for {agree}/{len(results)}; refused queries {sum(refused)}/500")
    missed = sorted(p for p in index.paths if child[p] and p not in excluded)
    lines.append(f"{'':<28} child photos not flagged: {len(missed)} {missed}")
    # A query photo is refused when its own score reaches the threshold: every seed photo's
    # verdict follows from its stored flag; every 10th is sent through search_by_photo too
    # (decoding and embedding all 100 again would double the run time on a CPU).
    flags = child_filter.flags(index.child_scores(child_filter))
    for row in range(0, len(index), 10):
        sent = engine.search_by_photo(index.photo_dir / index.paths[row], k=1)
        assert sent.blocked == bool(flags[row]), index.paths[row]
    lines.append(f"{'':<28} seed photos refused as query photos: {int(flags.sum())}/100")

    # Flickr8k TEST: 1000 photos (224 px), all 5000 captions as queries; printed only. The
    # embeddings come from the tower feature cache through the model's heads (what training
    # measures; checked against the engine's `encode_images` on probe photos): embedding
    # 1000 photos and 5000 captions again would take many minutes on a CPU.
    lines.extend(_flickr_test_lines(shared, encoder, child_filter, legal, child))
    print("\n".join(lines))

    assert seed["leak_rate"] <= 0.01, f"leak rate {seed['leak_rate']:.2%} over 1%"
    assert seed["r5_filtered"] >= seed["r5_unfiltered"] - 0.03
