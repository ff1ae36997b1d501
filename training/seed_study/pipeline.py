"""`seed-study`: the whole study in order, writing report.md/html, metrics.json and PNGs.

Each step is a function of the previous steps' outputs; the expensive ones (tower features,
dual-encoder embeddings) are cached on disk so a rerun only retrains the small models.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.encoders import ModelSpecError, load_encoder
from engine.legal import LegalFilter
from engine.rerank import (
    RerankConfig,
    Reranker,
    dual_pair_features,
    make_image_features,
    make_text_features,
    save_reranker,
    seed_pair_features,
)
from training.seed_data import SeedDataError, query_source_image
from training.seed_study.conclusion import (
    STUDY_MSE,
    STUDY_PHOTOS_REMOVED,
    best_by,
    comparison_rows,
    conclusions,
    tower_label,
)
from training.seed_study.dataset import SeedTables, build_pairs, load_tables
from training.seed_study.eda import exploration_plots, exploration_stats, photo_info
from training.seed_study.evaluation import (
    PairViews,
    TestFeatures,
    chance,
    combined_retrieval,
    cross_validate,
    fit_all,
    rescore,
    retrieval,
    retrieval_all,
    rounded,
    score_matrix,
)
from training.seed_study.exclusion import (
    Exclusion,
    apply_exclusion,
    caption_threshold_table,
    child_caption_counts,
    flagged_photos,
    restricted_queries,
)
from training.seed_study.features import dual_text_embeddings, photo_views, text_features
from training.seed_study.metrics import REGRESSION_KEYS, top_photos
from training.seed_study.models import ModelSettings, ModelSpec, PairModel, describe, model_zoo
from training.seed_study.report import (
    Bullets,
    Code,
    Document,
    Figure,
    Heading,
    Paragraph,
    contact_sheet,
    table,
    to_html,
    to_markdown,
)
from training.seed_study.split import photo_folds

log = logging.getLogger(__name__)

VARIANTS = ("expert", "expert+crowd", "expert+crowd+recovered")
MAIN_VARIANT = "expert+crowd"
ABLATION_MODELS = ("ridge", "dual_head")
SHEET_QUERIES = 8
SHEET_TOP = 5


class StudyError(ValueError):
    """A problem the user can fix (wrong data folder, missing model); exit code 2."""


@dataclass(frozen=True)
class StudyConfig:
    """Every knob of one run (recorded in metrics.json and the re-ranker's card)."""

    data_root: Path
    out: Path
    cache_dir: Path = Path(".cache/features")
    text_model: str = "minilm"
    resnet18_weights: Path | None = None
    dual_model: str = "dual:default"
    folds: int = 5
    seed: int = 0
    depth: int = 30
    threads: int = 0
    mlp_epochs: int = 10
    reranker_name: str = "seed-reranker"
    reranker_version: str = "1.0.0"
    command: str = ""

    @property
    def text_spec(self) -> str:
        return self.text_model if self.text_model == "minilm" else f"hf:{self.text_model}"

    @property
    def image_spec(self) -> str:
        return (f"resnet18:{self.resnet18_weights}" if self.resnet18_weights is not None
                else "lite0")


def resolve_threads(requested: int) -> int:
    """Threads for torch/LightGBM/forests: `requested`, or 1 on a busy machine, else all.

    On a 2-core machine that something else keeps busy, two OpenMP threads that spin while
    waiting ran the towers and the MLP 1.5–4× slower than one thread (measured), so "auto"
    looks at the load average first. With `OMP_WAIT_POLICY=PASSIVE` (threads sleep instead of
    spinning; it must be set before Python starts) two threads were faster even when busy.
    """
    if requested > 0:
        return requested
    cores = os.cpu_count() or 1
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
        return min(cores, 4)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return 1 if load >= 0.75 or cores == 1 else min(cores, 4)


@dataclass
class Features:
    """Per-text and per-photo rows of every view, with name → row lookups."""

    text_rows: dict[str, int]
    photo_rows: dict[str, int]
    text: dict[str, np.ndarray]
    image: dict[str, np.ndarray]
    text_tower: str
    image_tower: str
    dual_model: str

    def views(self, frame: pd.DataFrame) -> PairViews:
        t = frame["query_text"].map(self.text_rows).to_numpy()
        i = frame["image"].map(self.photo_rows).to_numpy()
        return PairViews(
            views={"seed": seed_pair_features(self.text["seed"][t], self.image["seed"][i]),
                   "dual": dual_pair_features(self.text["dual"][t], self.image["dual"][i])},
            y=frame["target"].to_numpy(np.float32), images=frame["image"].tolist(),
            queries=frame["query_id"].tolist())


@dataclass
class Outcome:
    """What the run produced, for the report."""

    metrics: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    sheets: dict[str, Path] = field(default_factory=dict)


# --------------------------------------------------------------------------------- steps


def _exclusions(tables: SeedTables, variants: Mapping[str, pd.DataFrame], legal: LegalFilter
                ) -> tuple[dict[str, Exclusion], dict[str, Any], np.ndarray]:
    """Apply the legal rules to every variant; the summary; which test queries are allowed."""
    texts: dict[str, str] = {}
    for frame in variants.values():
        texts.update(zip(frame["query_id"], frame["query_text"], strict=True))
    restricted = restricted_queries(texts, lambda text: not legal.check_query(text).allowed)
    train_images = sorted(set(tables.train_pairs["image"]) | set(tables.expert["image"])
                          | set(tables.crowd["image"]))
    counts = child_caption_counts(tables.captions, train_images, legal.mentions_children)
    flagged = flagged_photos(counts, 1)
    done = {name: apply_exclusion(frame, restricted, flagged) for name, frame in variants.items()}
    allowed = np.array([legal.check_query(q.text).allowed for q in tables.test_queries])
    test_counts = child_caption_counts(tables.captions, tables.test_images,
                                       legal.mentions_children)
    sources = {query_source_image(q) for q in restricted} & set(train_images)
    summary: dict[str, Any] = {
        **done[MAIN_VARIANT].summary,
        "rule": "pair dropped if its query is refused; photo dropped if any of its captions "
                "mentions children",
        "caption_thresholds": caption_threshold_table(counts),
        "photos_without_captions": sum(1 for n in train_images if n not in tables.captions),
        "photos_described_by_a_restricted_query": len(sources),
        "study_reported_photos": STUDY_PHOTOS_REMOVED,
        "test_queries_refused": int((~allowed).sum()),
        "test_photos_flagged": len(flagged_photos(test_counts, 1)),
        "legal_fingerprint": legal.fingerprint,
    }
    return done, summary, allowed


def _features(config: StudyConfig, tables: SeedTables, texts: Sequence[str]) -> Features:
    """Tower features and dual-encoder embeddings of every text and every photo (cached)."""
    train_names = sorted(set(tables.train_pairs["image"]) | set(tables.crowd["image"])
                         | set(tables.expert["image"]))
    paths = ([tables.train_dir / n for n in train_names]
             + [tables.test_dir / n for n in tables.test_images])
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise StudyError(f"{len(missing)} photo(s) missing, e.g. {missing[0]}")
    try:
        text_tower = make_text_features(config.text_spec)
        image_tower = make_image_features(config.image_spec)
    except ValueError as error:
        raise StudyError(str(error)) from error
    try:
        encoder = load_encoder(config.dual_model)
    except ModelSpecError as error:
        raise StudyError(f"cannot load the dual encoder {config.dual_model!r}: {error} "
                         "(pass --dual-model dual:/path/to/artifact)") from error
    seed_text = text_features(config.cache_dir, text_tower, texts)
    dual_text = dual_text_embeddings(config.cache_dir, encoder, texts)
    seed_image, dual_image = photo_views(config.cache_dir, image_tower, encoder, paths)
    names = train_names + list(tables.test_images)
    return Features(
        text_rows={t: i for i, t in enumerate(texts)},
        photo_rows={n: i for i, n in enumerate(names)},
        text={"seed": seed_text, "dual": dual_text},
        image={"seed": seed_image, "dual": dual_image},
        text_tower=text_tower.name, image_tower=image_tower.name, dual_model=encoder.name)


def _test_features(features: Features, tables: SeedTables, allowed: np.ndarray) -> TestFeatures:
    t = np.array([features.text_rows[q.text] for q in tables.test_queries])
    i = np.array([features.photo_rows[n] for n in tables.test_images])
    position = {name: k for k, name in enumerate(tables.test_images)}
    return TestFeatures(
        text={view: m[t] for view, m in features.text.items()},
        image={view: m[i] for view, m in features.image.items()},
        builders={"seed": seed_pair_features, "dual": dual_pair_features},
        targets=np.array([position[q.image] for q in tables.test_queries]), allowed=allowed)


def _flat_summary(summary: Mapping[str, Mapping[str, Mapping[str, float]]]
                  ) -> dict[str, dict[str, float]]:
    """{model: {metric: mean, metric_std: std}} with 4 decimals."""
    out: dict[str, dict[str, float]] = {}
    for key, both in summary.items():
        row: dict[str, float] = {}
        for metric in REGRESSION_KEYS:
            row[metric] = round(both["mean"][metric], 4)
            row[f"{metric}_std"] = round(both["std"][metric], 4)
        out[key] = row
    return out


def _sheet_queries(tables: SeedTables, allowed: np.ndarray, seed: int) -> list[int]:
    """Eight allowed test queries about eight different photos (fixed by the seed)."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    seen: set[str] = set()
    for q in rng.permutation(len(tables.test_queries)):
        query = tables.test_queries[int(q)]
        if allowed[q] and query.image not in seen:
            chosen.append(int(q))
            seen.add(query.image)
        if len(chosen) == SHEET_QUERIES:
            break
    return chosen


def _combined_top(first: np.ndarray, second: np.ndarray, depth: int, k: int) -> np.ndarray:
    """Top `k` photos per query after re-ordering the first stage's top `depth`."""
    rows = []
    for q in range(len(first)):
        head = np.argsort(-first[q], kind="stable")
        top, rest = head[:depth], head[depth:]
        top = top[np.argsort(-second[q, top], kind="stable")]
        rows.append(np.concatenate([top, rest])[:k])
    return np.array(rows)


def _save_best(config: StudyConfig, key: str, spec: ModelSpec, model: PairModel,
               features: Features, metrics: Mapping[str, Any], sample: np.ndarray
               ) -> dict[str, Any]:
    """Save the chosen scorer as an engine re-ranker artifact; check the engine reads it back."""
    exported = model.export()
    if exported is None:
        raise RuntimeError(f"model {key} cannot be exported")
    seed_view = spec.view == "seed"
    rerank_config = RerankConfig(
        name=config.reranker_name, version=config.reranker_version, scorer=exported.kind,
        features=spec.view, text=features.text_tower if seed_view else None,
        image=features.image_tower if seed_view else None,
        dual_model=None if seed_view else features.dual_model,
        layers=exported.layers, depth=config.depth,
        extra={"model": key, "hyper_parameters": describe(model)})
    artifact_metrics = _finite({"validation": metrics["regression"][key],
                                "test": metrics["retrieval"][key],
                                "combination": metrics.get("combination", {}).get(key)})
    out = save_reranker(config.out / "reranker", rerank_config, exported.scorer,
                        artifact_metrics, _model_card(config, key, spec, model, features,
                                                      metrics, rerank_config))
    loaded = Reranker(out)
    expected = np.asarray(model.predict(sample), np.float64)
    actual = np.asarray(loaded.scorer.predict(sample), np.float64)
    if not np.allclose(expected, actual, atol=1e-4):
        raise RuntimeError("the saved re-ranker does not reproduce the trained model")
    size = sum(f.stat().st_size for f in out.iterdir())
    return {"model": key, "path": str(out), "bytes": size, "features": spec.view,
            "scorer": exported.kind}


def _model_card(config: StudyConfig, key: str, spec: ModelSpec, model: PairModel,
                features: Features, metrics: Mapping[str, Any], rerank: RerankConfig) -> str:
    reg = metrics["regression"][key]
    test = metrics["retrieval"][key]
    combo = metrics.get("combination", {}).get(key)
    lines = [
        f"# Model card: {rerank.name}@{rerank.version} (re-ranker)", "",
        f"Trained {datetime.now(UTC):%Y-%m-%d} by `python -m training seed-study` "
        f"on {platform.machine()} CPU.", "",
        "## What it is",
        f"- {spec.label} (`{key}`), chosen among the exportable scorers by validation "
        "nDCG@5 per query (never by the test set).",
        f"- Pair features: `{spec.view}` — " + (
            f"text {features.text_tower} ⊕ photo {features.image_tower}."
            if spec.view == "seed" else
            f"product and cosine of {features.dual_model} embeddings (needs an index built "
            "by that model)."),
        f"- Hyper-parameters: `{json.dumps(describe(model))}`.", "",
        "## Data",
        "- The customer's seed set (`seed/`): expert and crowd labels aggregated as the study "
        "did, pairs with restricted queries and photos whose captions mention children "
        f"removed ({metrics['excluded']['pairs_kept']} pairs, "
        f"{metrics['excluded']['photos_kept']} photos).", "",
        "## Metrics",
        f"- Validation ({metrics['folds']}-fold by photo): MSE {reg['mse']:.4f} ± "
        f"{reg['mse_std']:.4f}, Spearman {reg['spearman']:.3f}, nDCG@5 {reg['ndcg@5']:.3f}.",
        f"- Seed test set, ranking all 100 photos alone: R@1 {test['R@1']:.3f}, R@5 "
        f"{test['R@5']:.3f}, R@10 {test['R@10']:.3f}, MRR {test['MRR']:.3f}.",
    ]
    if combo:
        dual = metrics["retrieval"]["dual_cosine"]
        lines.append(f"- Re-ranking the dual encoder's top {config.depth}: R@5 "
                     f"{dual['R@5']:.3f} → {combo['R@5']:.3f}, MRR {dual['MRR']:.3f} → "
                     f"{combo['MRR']:.3f}.")
    lines += [
        "", "## Use", "```",
        "python -m engine search --index INDEX --rerank PATH/TO/reranker \"a dog on a beach\"",
        "```", "",
        "## Limits",
        "- Trained on about a thousand photos of one collection (Flickr people, dogs, "
        "outdoor scenes); it has seen few subjects.",
        "- The re-ranker only re-orders the first stage's candidates; it adds and removes "
        "nothing, and the legal filter still decides what may be shown.",
        "- Whether it helps is measured above: keep it off when the re-ranking row is not "
        "better than the dual encoder alone.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- run


def run_seed_study(config: StudyConfig) -> dict[str, Any]:
    """Run every step; write the report into `config.out`; return metrics.json's content."""
    import torch

    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 1)
        log.info("step %s: %.1f s", name, now - since)
        return now

    threads = resolve_threads(config.threads)
    torch.set_num_threads(threads)
    settings = ModelSettings(seed=config.seed, threads=threads, mlp_epochs=config.mlp_epochs)
    config.out.mkdir(parents=True, exist_ok=True)
    try:
        tables = load_tables(config.data_root)
    except SeedDataError as error:
        raise StudyError(str(error)) from error
    legal = LegalFilter.default()
    outcome = Outcome()
    mark = time.perf_counter()

    photos = (photo_info(tables.train_dir, sorted(set(tables.train_pairs["image"])), "train")
              + photo_info(tables.test_dir, tables.test_images, "test"))
    eda = exploration_stats(tables, photos)
    outcome.figures.update(exploration_plots(tables, photos, config.out))
    mark = lap("exploration", mark)

    variants = {
        "expert": build_pairs(tables, use_crowd=False),
        "expert+crowd": build_pairs(tables, use_crowd=True),
        "expert+crowd+recovered": build_pairs(tables, use_crowd=True, recover=True),
    }
    excluded, excluded_summary, allowed = _exclusions(tables, variants, legal)
    mark = lap("targets_and_exclusion", mark)

    texts = list(dict.fromkeys([*variants["expert+crowd+recovered"]["query_text"],
                                *(q.text for q in tables.test_queries)]))
    features = _features(config, tables, texts)
    mark = lap("features", mark)

    frame = excluded[MAIN_VARIANT].kept.sample(frac=1.0, random_state=config.seed)
    frame = frame.reset_index(drop=True)
    if frame["image"].nunique() < config.folds:
        raise StudyError(f"only {frame['image'].nunique()} photos survive the exclusion; "
                         f"need at least --folds {config.folds}")
    folds = photo_folds(frame["image"].tolist(), config.folds)
    fold_of_photo = dict(zip(frame["image"], folds, strict=True))
    pairs = features.views(frame)
    test = _test_features(features, tables, allowed)
    shapes = {
        "train_pairs": {view: list(x.shape) for view, x in pairs.views.items()},
        "test_pairs": {view: [test.n_queries * test.n_photos, pairs.views[view].shape[1]]
                       for view in pairs.views},
        "text": {view: list(m.shape) for view, m in features.text.items()},
        "image": {view: list(m.shape) for view, m in features.image.items()},
    }
    log.info("pair vectors: %s", shapes)

    zoo = model_zoo()
    specs = {spec.key: spec for spec in zoo}
    cv = cross_validate(zoo, pairs, folds, settings)
    regression = _flat_summary(cv.summary())
    mark = lap("cross_validation", mark)

    scores: dict[str, np.ndarray] = {}
    fitted: dict[str, PairModel] = {}
    retrieval_table: dict[str, dict[str, float]] = {}
    retrieval_unfiltered: dict[str, dict[str, float]] = {}
    for spec in zoo:
        model = fit_all(spec, pairs, settings)
        fitted[spec.key] = model
        scores[spec.key] = score_matrix(model, spec.view, test)
        retrieval_table[spec.key] = rounded(retrieval(scores[spec.key], test))
        retrieval_unfiltered[spec.key] = rounded(retrieval_all(scores[spec.key], test))
    seed_keys = [s.key for s in zoo if s.family == "seed-style"]
    best_seed = best_by(regression, "ndcg@5", seed_keys)
    combination = {}
    for key in dict.fromkeys([best_seed, "dual_head"]):
        combination[key] = rounded(combined_retrieval(scores["dual_cosine"], scores[key], test,
                                                      config.depth))
    mark = lap("test", mark)

    ablation: dict[str, dict[str, dict[str, float]]] = {}
    chosen = [specs[k] for k in ABLATION_MODELS]
    for name in VARIANTS:
        if name == MAIN_VARIANT:
            # The very pairs, order and folds of the main cross-validation: its out-of-fold
            # predictions and refitted models are reused instead of being trained again.
            expert_rows = (frame["source"] == "expert").to_numpy()
            vcv = _flat_summary(rescore(cv, pairs, folds, expert_rows,
                                        ABLATION_MODELS).summary())
            vframe, test_scores = frame, {spec.key: scores[spec.key] for spec in chosen}
        else:
            vframe = excluded[name].kept.sample(frac=1.0, random_state=config.seed)
            vframe = vframe.reset_index(drop=True)
            vfolds = np.array([fold_of_photo.get(img, zlib.crc32(img.encode()) % config.folds)
                               for img in vframe["image"]])
            vpairs = features.views(vframe)
            expert_rows = (vframe["source"] == "expert").to_numpy()
            vcv = _flat_summary(cross_validate(chosen, vpairs, vfolds, settings,
                                               score_rows=expert_rows).summary())
            test_scores = {spec.key: score_matrix(fit_all(spec, vpairs, settings), spec.view,
                                                  test) for spec in chosen}
        for spec in chosen:
            test_report = retrieval(test_scores[spec.key], test)
            ablation.setdefault(spec.key, {})[name] = {
                **vcv[spec.key], "pairs": float(len(vframe)),
                "R@5": round(test_report["R@5"], 4), "MRR": round(test_report["MRR"], 4)}
    mark = lap("ablation", mark)

    labels = {spec.key: spec.label for spec in zoo}
    metrics: dict[str, Any] = {
        "regression": regression,
        "retrieval": retrieval_table,
        "excluded": excluded_summary,
        "retrieval_all_queries": retrieval_unfiltered,
        "combination": combination,
        "chance": rounded(chance(test)),
        "ablation": ablation,
        "labels": labels,
        "seed_style": seed_keys,
        "folds": config.folds,
        "depth": config.depth,
        "test_photos": test.n_photos,
        "folds_detail": {k: [rounded(r) for r in v] for k, v in cv.folds.items()},
        "features": {"text": features.text_tower, "image": features.image_tower,
                     "dual_model": features.dual_model},
        "shapes": shapes,
        "study_reported": {"validation_mse": STUDY_MSE, "model": "3-layer network",
                           "photos_removed": STUDY_PHOTOS_REMOVED},
        "eda": eda,
        "config": {k: str(v) for k, v in config.__dict__.items()},
        "threads": threads,
    }
    # The cosine alone is the first stage itself: as a re-ranker it would change nothing.
    exportable = [k for k in specs if k not in ("constant", "dual_cosine")
                  and fitted[k].export() is not None]
    best = best_by(regression, "ndcg@5", exportable)
    sample = pairs.views[specs[best].view][:256]
    metrics["best_scorer"] = _save_best(config, best, specs[best], fitted[best], features,
                                        metrics, sample)

    chosen_queries = _sheet_queries(tables, allowed, config.seed)
    photo_paths = [tables.test_dir / n for n in tables.test_images]
    query_texts = [tables.test_queries[q].text for q in chosen_queries]
    relevant = [int(test.targets[q]) for q in chosen_queries]
    sheet_models = [k for k in specs if k != "constant"]
    for key in sheet_models:
        top = top_photos(scores[key][chosen_queries], SHEET_TOP)
        outcome.sheets[key] = contact_sheet(config.out / f"sheet_{key}.png", labels[key],
                                            query_texts, photo_paths, top, relevant)
    combo_top = _combined_top(scores["dual_cosine"][chosen_queries],
                              scores[best_seed][chosen_queries], config.depth, SHEET_TOP)
    outcome.sheets["combination"] = contact_sheet(
        config.out / "sheet_combination.png",
        f"Dual top-{config.depth} re-ranked by {labels[best_seed]}", query_texts, photo_paths,
        combo_top, relevant)
    mark = lap("artifact_and_sheets", mark)

    metrics["timing_seconds"] = {**timings, "total": round(time.perf_counter() - started, 1)}
    outcome.metrics = metrics
    write_report(config, outcome)
    return metrics


# -------------------------------------------------------------------------------- report


def write_report(config: StudyConfig, outcome: Outcome) -> None:
    """report.md, report.html and metrics.json under `config.out`."""
    metrics = outcome.metrics
    doc = build_document(metrics, outcome)
    (config.out / "report.md").write_text(to_markdown(doc), encoding="utf-8")
    (config.out / "report.html").write_text(to_html(doc), encoding="utf-8")
    (config.out / "metrics.json").write_text(
        json.dumps(_finite(metrics), indent=2, ensure_ascii=False, default=_json_default)
        + "\n", encoding="utf-8")


def _finite(value: Any) -> Any:
    """NaN and infinities become null: metrics.json must be strict JSON for other tools."""
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_default(value: object) -> object:
    if isinstance(value, np.integer | np.floating):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _pm(row: Mapping[str, float], metric: str, digits: int) -> str:
    """"mean ± std" of a fold summary, a dash where undefined (a constant has no ρ)."""
    mean, std = row[metric], row[f"{metric}_std"]
    if not np.isfinite(mean):
        return "—"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def build_document(metrics: Mapping[str, Any], outcome: Outcome) -> Document:
    """The report's content, from the metrics and the written PNGs."""
    labels: Mapping[str, str] = metrics["labels"]
    eda = metrics["eda"]
    excluded = metrics["excluded"]
    doc = Document("Seed study, reproduced and measured as search")
    doc.add(Paragraph(
        "The customer's study (explore, exclude restricted data, vectorise texts and photos, "
        "regress a match score, test the best model) rerun as one command, "
        f"`{metrics['config']['command'] or 'python -m training seed-study'}`, with search "
        "metrics next to the regression ones and our dual encoder beside the study's models."))

    doc.add(Heading("Conclusion"))
    doc.add(*(Paragraph(p) for p in conclusions(metrics)))
    doc.add(table(["Figure", "Study (reported)", "This pipeline"], comparison_rows(metrics)))

    doc.add(Heading(f"Test: ranking the {metrics['test_photos']} seed test photos"))
    doc.add(Paragraph(
        f"Every model scores all {metrics['test_photos']} photos for each of the "
        f"{int(metrics['chance']['n'])} "
        f"test queries the legal filter allows ({int(metrics['chance']['refused'])} refused "
        "queries are reported apart: the engine answers them with a disclaimer). Ties count "
        "against the relevant photo, so the constant model ranks it last."))
    rows: list[list[object]] = []
    for key, report in metrics["retrieval"].items():
        rows.append([labels[key], report["R@1"], report["R@5"], report["R@10"], report["MRR"],
                     int(report["n"]), int(report["refused"])])
    for key, report in metrics["combination"].items():
        rows.append([f"Dual top-{metrics['depth']} → {labels[key]}", report["R@1"],
                     report["R@5"], report["R@10"], report["MRR"], int(report["n"]),
                     int(report["refused"])])
    ch = metrics["chance"]
    rows.append(["Random ranking (expected)", ch["R@1"], ch["R@5"], ch["R@10"], ch["MRR"],
                 int(ch["n"]), int(ch["refused"])])
    doc.add(table(["Model", "R@1", "R@5", "R@10", "MRR", "queries", "refused"], rows))
    doc.add(Paragraph("The same over all 500 queries, as if no filter ran:"))
    doc.add(table(["Model", "R@1", "R@5", "R@10", "MRR"],
                  [[labels[k], r["R@1"], r["R@5"], r["R@10"], r["MRR"]]
                   for k, r in metrics["retrieval_all_queries"].items()]))

    doc.add(Heading(f"Validation: {metrics['folds']}-fold cross-validation by photo"))
    doc.add(Paragraph(
        "GroupKFold over the pair's photo: no photo is in a fold's training and validation "
        "part (asserted for every fold). Mean ± standard deviation over folds; nDCG@5 is "
        "computed per validation query over its annotated photos and averaged."))
    doc.add(table(
        ["Model", "MSE", "RMSE", "MAE", "Spearman ρ", "nDCG@5"],
        [[labels[k], _pm(r, "mse", 4), _pm(r, "rmse", 4), _pm(r, "mae", 4),
          _pm(r, "spearman", 3), _pm(r, "ndcg@5", 3)]
         for k, r in metrics["regression"].items()]))
    shapes = metrics["shapes"]
    doc.add(Paragraph(
        f"Pair vectors (the study asked for their shapes): seed-style "
        f"{tuple(shapes['train_pairs']['seed'])} for training = text "
        f"{shapes['text']['seed'][1]} ({tower_label(metrics['features']['text'])}) ⊕ photo "
        f"{shapes['image']['seed'][1]} ({tower_label(metrics['features']['image'])}); dual "
        f"{tuple(shapes['train_pairs']['dual'])} (product of "
        f"{metrics['features']['dual_model']} embeddings ⊕ cosine); test "
        f"{tuple(shapes['test_pairs']['seed'])} and {tuple(shapes['test_pairs']['dual'])}."))

    doc.add(Heading("Training data: what crowd pairs and recovered texts add"))
    ablation_rows = []
    for model, variants in metrics["ablation"].items():
        for name, r in variants.items():
            ablation_rows.append([labels[model], name, int(r["pairs"]), _pm(r, "mse", 4),
                                  _pm(r, "ndcg@5", 3), r["R@5"], r["MRR"]])
    doc.add(Paragraph(
        "Same photo folds for every variant; validation scored on expert-labelled pairs only "
        "(the common ground), test on the seed test set."))
    doc.add(table(["Model", "Training pairs", "n", "MSE (expert val.)", "nDCG@5 (expert val.)",
                   "test R@5", "test MRR"], ablation_rows))

    doc.add(Heading("Legal exclusion"))
    doc.add(Paragraph(f"Rule: {excluded['rule']} (engine lexicon "
                      f"{excluded['legal_fingerprint']})."))
    doc.add(table(["What", "Count"], [
        ["pairs before", excluded["pairs_before"]],
        ["pairs with a restricted query", excluded["pairs_restricted_query"]],
        ["pairs of a flagged photo", excluded["pairs_flagged_photo"]],
        ["pairs with both reasons", excluded["pairs_both_reasons"]],
        ["pairs kept", excluded["pairs_kept"]],
        ["queries restricted / before", f"{excluded['queries_restricted']} / "
                                         f"{excluded['queries_before']}"],
        ["photos flagged / before", f"{excluded['photos_flagged']} / "
                                    f"{excluded['photos_before']}"],
        ["photos described by a restricted query (another possible rule)",
         excluded["photos_described_by_a_restricted_query"]],
        ["test queries refused", excluded["test_queries_refused"]],
        ["test photos whose captions mention children (kept: the test ranks all 100)",
         excluded["test_photos_flagged"]],
    ]))
    doc.add(Paragraph("Flagged photos by how many of the five captions must mention a child "
                      f"(the study removed {excluded['study_reported_photos']}):"))
    doc.add(table(["≥ captions", "photos"], [[r["min_captions"], r["photos"]]
                                             for r in excluded["caption_thresholds"]]))

    doc.add(Heading("Exploration"))
    pairs, queries = eda["pairs"], eda["queries"]
    agreement = eda["agreement"]
    doc.add(Bullets((
        f"{pairs['train_dataset']} expert-scored pairs over {eda['photos']['train']} photos and "
        f"{queries['train_dataset']} queries; {pairs['crowd']} crowd pairs, "
        f"{pairs['expert_and_crowd']} of them also scored by experts; "
        f"{pairs['aggregate']} pairs in the aggregate.",
        f"Crowd pairs whose query text is missing from train_dataset.csv: "
        f"{queries['crowd_pairs_without_text']} ({queries['crowd_without_text']} queries), "
        "recoverable from Flickr8k captions.",
        "Expert scores " + ", ".join(f"{k}: {v}" for k, v in eda["expert_scores"].items())
        + " (1 = no match … 4 = exact): skewed towards \"no match\".",
        f"Agreement of the three experts: Krippendorff's α interval "
        f"{agreement['krippendorff_alpha_interval']:.3f}, ordinal "
        f"{agreement['krippendorff_alpha_ordinal']:.3f}, nominal "
        f"{agreement['krippendorff_alpha_nominal']:.3f}; Fleiss' κ "
        f"{agreement['fleiss_kappa']:.3f}; all three identical on "
        f"{100 * agreement['unanimous_share']:.1f}% of pairs.",
        f"Crowd: mean share of yes {eda['crowd']['mean_share']:.3f}, "
        f"{100 * eda['crowd']['share_zero']:.1f}% of pairs with no yes at all; votes per pair "
        f"{eda['crowd']['votes']}.",
        f"Expert mean vs crowd share on the shared pairs: Spearman "
        f"{eda['expert_vs_crowd']['spearman']:.3f} ({eda['expert_vs_crowd']['pairs']} pairs).",
        f"Pairs per photo: {eda['per_photo']['expert_mean']:.1f} expert, "
        f"{eda['per_photo']['crowd_mean']:.1f} crowd; per query: "
        f"{eda['per_query']['expert_mean']:.1f} expert, {eda['per_query']['crowd_mean']:.1f} "
        "crowd.",
        f"Query length: {eda['query_words']['train_mean']:.1f} words on average in training "
        f"(max {eda['query_words']['train_max']}), {eda['query_words']['test_mean']:.1f} in "
        "the test queries.",
        f"Photos: formats {eda['photos']['formats']}, widths "
        f"{eda['photos']['width_range']}, heights {eda['photos']['height_range']} px.",
        "Class imbalance (target ≥ 0.5): " + ", ".join(
            f"{source} {100 * t['share_at_least_half']:.1f}% of {t['pairs']} pairs"
            for source, t in eda["target"].items()) + ".",
        f"Pairs whose photo is the one the query was written for: "
        f"{eda['own_photo_pairs']['pairs']} (mean target "
        f"{eda['own_photo_pairs']['mean_target']:.3f} vs "
        f"{eda['own_photo_pairs']['mean_target_other']:.3f} for the others).",
    )))
    doc.add(table(["Experts", "identical", "mean |Δ|", "weighted κ"],
                  [[p["raters"], p["exact"], p["mean_abs_diff"], p["kappa_quadratic"]]
                   for p in agreement["pairwise"]]))
    captions = {"expert": "Expert scores and their disagreement",
                "crowd": "Crowd shares, and against the experts' mean",
                "pairs": "Pairs per photo and per query",
                "queries_photos": "Query lengths and photo sizes",
                "target": "The aggregate target and its imbalance"}
    for name, path in outcome.figures.items():
        doc.add(Figure(path, captions.get(name, name)))

    doc.add(Heading("Demonstration: 8 test queries × top 5"))
    doc.add(Paragraph("The relevant photo is framed in green. Internal report only: the photos "
                      "are not ours to publish."))
    for key, path in outcome.sheets.items():
        caption = labels.get(key, f"Dual encoder's top {metrics['depth']} re-ordered by the best "
                                  "seed-style regressor")
        doc.add(Figure(path, caption))

    best = metrics["best_scorer"]
    doc.add(Heading("Re-ranker artifact"))
    doc.add(Paragraph(
        f"The best exportable scorer by validation nDCG@5, {labels[best['model']]}, is saved at "
        f"`{best['path']}` ({best['bytes'] / 1024:.0f} KiB, `{best['scorer']}` scorer over "
        f"`{best['features']}` features) with its model card. Use it with "
        "`python -m engine search --rerank PATH`."))
    doc.add(Heading("Run"))
    doc.add(Code(json.dumps({"timing_seconds": metrics.get("timing_seconds", {}),
                             "threads": metrics["threads"], "config": metrics["config"]},
                            indent=2)))
    return doc
