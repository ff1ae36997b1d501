"""`make bench`: the default model through the real CLI, side by side with a random ranking.

Prints (never asserts timings):
- text→photo Recall@1/5/10 and MRR on the seed test set (500 queries, 100 photos) and on the
  Flickr8k TEST split (5000 captions, 1000 photos), legal filter on, over the queries it does
  not refuse; refusals counted apart;
- Russian vs English on the held-out translations (same queries), and whether the same
  queries are refused;
- query latency p50/p95 (legal check + text encoding + top-k) over 1k/10k/100k photos, with
  the default query head (English captions), and at 100k for Russian queries and with the
  model's full MiniLM+e5 text head;
- indexing throughput and peak RSS.

Needs the shared data (`SHARED_DATA`, default ../shared/data); skipped without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from training.benchmark import (
    QuerySet,
    blocked_flags,
    cli_index,
    cli_search,
    latency_profile,
    link_photos,
    random_baseline,
    score_results,
    self_peak_rss_mb,
    synthetic_index,
)
from training.flickr8k import Flickr8k
from training.seed_data import load_test_queries
from training.translations import load_translations

pytestmark = pytest.mark.bench

SHARED = Path(os.environ.get("SHARED_DATA", "../shared/data"))
K = 100  # results fetched per query; ranks beyond are misses (MRR loses < 0.01)


@pytest.fixture(scope="module")
def shared() -> Path:
    if not (SHARED / "seed").is_dir() or not (SHARED / "flickr8k").is_dir():
        pytest.skip(f"shared data not found at {SHARED} (set SHARED_DATA)")
    return SHARED


def _row(name: str, report: dict[str, float]) -> str:
    return (f"{name:<44} {report['R@1']:6.3f} {report['R@5']:6.3f} {report['R@10']:6.3f} "
            f"{report['MRR']:6.3f} {int(report['n']):6d} {int(report.get('refused', 0)):7d}")


def test_engine_benchmark(shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                          ) -> None:
    # The model's retrieval quality, with the legal *query* filter on: the photo-side child
    # filter would hide most targets (tests/bench/test_child_filter_bench.py measures it).
    monkeypatch.setenv("ENGINE_CHILD_FILTER", "off")
    lines = ["", "== Engine benchmark: default model through `python -m engine` ==",
             "(legal query filter on; photo-side child filter off: ENGINE_CHILD_FILTER=off)",
             f"{'set':<44} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MRR':>6} {'n':>6} {'refused':>7}"]

    # Seed test set: the customer's 100 test photos as delivered.
    seed_queries = load_test_queries(shared / "seed")
    seed_index = tmp_path / "seed-index"
    seed_build = cli_index(shared / "seed" / "test_images", seed_index)
    seed = QuerySet("seed", [q.text for q in seed_queries], [q.image for q in seed_queries])
    seed_en = cli_search(seed_index, seed.texts, K)
    lines.append(_row("seed test, English (filter on)", score_results(seed_en, seed.targets, K)))
    lines.append(_row("seed test, random ranking", random_baseline(500, 100)))

    # Russian: the same 500 queries, human translations held out from training.
    ru_text = load_translations("seed_test")
    seed_ru = cli_search(seed_index, [ru_text[q.query_id] for q in seed_queries], K)
    en_flags, ru_flags = blocked_flags(seed_en), blocked_flags(seed_ru)
    both_allowed = [i for i, (a, b) in enumerate(zip(en_flags, ru_flags, strict=True))
                    if not a and not b]
    en_same = score_results([seed_en[i] for i in both_allowed],
                            [seed.targets[i] for i in both_allowed], K)
    ru_same = score_results([seed_ru[i] for i in both_allowed],
                            [seed.targets[i] for i in both_allowed], K)
    lines.append(_row("seed test, English (queries allowed in both)", en_same))
    lines.append(_row("seed test, Russian (same queries)", ru_same))
    disagree = sum(a != b for a, b in zip(en_flags, ru_flags, strict=True))

    # Flickr8k TEST: 1000 photos squashed to 224 px, 5000 captions.
    data = Flickr8k(shared / "flickr8k")
    test_names = data.split("test")
    folder = link_photos([data.images_dir / n for n in test_names], tmp_path / "flickr-test")
    flickr_index = tmp_path / "flickr-index"
    flickr_build = cli_index(folder, flickr_index)
    captions = data.captions()
    texts = [c for n in test_names for c in captions[n]]
    targets = [n for n in test_names for _ in captions[n]]
    flickr_en = cli_search(flickr_index, texts, K)
    lines.append(_row("Flickr8k TEST, English (filter on)", score_results(flickr_en, targets, K)))
    lines.append(_row("Flickr8k TEST, random ranking", random_baseline(len(texts), 1000)))
    ru_flickr = load_translations("flickr8k_test")
    ids = list(ru_flickr)
    first_en = cli_search(flickr_index, [captions[q.split("#")[0]][0] for q in ids], K)
    first_ru = cli_search(flickr_index, [ru_flickr[q] for q in ids], K)
    allowed = [i for i, (a, b) in enumerate(zip(blocked_flags(first_en), blocked_flags(first_ru),
                                                strict=True)) if not a and not b]
    first_targets = [ids[i].split("#")[0] for i in allowed]
    lines.append(_row("Flickr8k TEST caption #0, English (both ok)",
                      score_results([first_en[i] for i in allowed], first_targets, K)))
    lines.append(_row("Flickr8k TEST caption #0, Russian (same)",
                      score_results([first_ru[i] for i in allowed], first_targets, K)))
    disagree += sum(a != b for a, b in zip(blocked_flags(first_en), blocked_flags(first_ru),
                                           strict=True))
    lines.append(f"legal filter: English and Russian verdicts differ on {disagree} of "
                 f"{len(seed_en) + len(first_en)} translated queries")

    # Latency over synthetic collections built from the real Flickr embeddings.
    from engine.child_filter import ChildFilter
    from engine.encoders import FULL_TEXT_HEAD, load_encoder
    from engine.encoders.base import text_model_name
    from engine.index import PhotoIndex
    from engine.legal import LegalFilter
    from engine.search import SearchEngine

    real = PhotoIndex.open(flickr_index)
    encoder = load_encoder(real.manifest["model_spec"] or "dual:default")
    legal = LegalFilter.default()
    probe = [t for t, flag in zip(texts[::50], blocked_flags(flickr_en)[::50], strict=True)
             if not flag][:60]
    lines.append("")
    lines.append("query latency (legal check + text encoding + top-10), "
                 "beyond 1000 real photos: noisy copies")
    lines.append(f"  text model: {text_model_name(encoder)}")
    for size in (1_000, 10_000, 100_000):
        root = synthetic_index(np.asarray(real.embeddings), size, tmp_path / f"syn-{size}",
                               real.model)
        engine = SearchEngine(encoder, PhotoIndex.open(root), legal, ChildFilter.off())
        timing = latency_profile(engine, probe)
        lines.append(f"  {size:>7} photos: p50 {timing['p50_ms']:6.1f} ms   "
                     f"p95 {timing['p95_ms']:6.1f} ms   ({int(timing['n'])} queries)")
    # Russian queries: the gloss through the query head (default), and with ENGINE_RUSSIAN_E5
    # (e5 reads the Russian too and the base's head is blended in).
    probe_ru = [ru_flickr[ids[i]] for i in allowed][:60]
    timing = latency_profile(engine, probe_ru)
    lines.append(f"  {size:>7} photos, Russian queries: p50 {timing['p50_ms']:6.1f} ms   "
                 f"p95 {timing['p95_ms']:6.1f} ms   ({int(timing['n'])} queries)")
    blended = load_encoder(real.manifest["model_spec"] or "dual:default", russian_e5=True)
    engine = SearchEngine(blended, PhotoIndex.open(root), legal, ChildFilter.off())
    timing = latency_profile(engine, probe_ru)
    lines.append(f"  {size:>7} photos, Russian queries with ENGINE_RUSSIAN_E5: p50 "
                 f"{timing['p50_ms']:6.1f} ms   p95 {timing['p95_ms']:6.1f} ms")
    # The same 100k index through the model's own MiniLM+e5 text head, for comparison.
    full = load_encoder(real.manifest["model_spec"] or "dual:default", FULL_TEXT_HEAD)
    engine = SearchEngine(full, PhotoIndex.open(root), legal, ChildFilter.off())
    timing = latency_profile(engine, probe)
    lines.append(f"  {size:>7} photos, full text head ({text_model_name(full)}): p50 "
                 f"{timing['p50_ms']:6.1f} ms   p95 {timing['p95_ms']:6.1f} ms")
    lines.append("")
    lines.append(f"indexing throughput (decode + towers + heads, model load excluded): "
                 f"{flickr_build['photos_per_s']:.1f} photos/s on Flickr8k TEST (224 px JPEG), "
                 f"{seed_build['photos_per_s']:.1f} photos/s on the seed photos (up to 500 px); "
                 f"whole command {flickr_build['seconds']:.0f} s for 1000 photos")
    lines.append(f"peak RSS: CLI processes {flickr_build['peak_rss_mb']:.0f} MB, "
                 f"this benchmark process (100k index loaded) {self_peak_rss_mb():.0f} MB")
    print("\n".join(lines))
