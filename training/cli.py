"""`python -m training`: train the dual encoder's heads, its query heads, the child detector, the
seed study.

`main(argv)` is callable from tests; every subcommand takes paths as arguments, never reads the
shared data from a fixed place.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from training.dual_encoder import TrainConfig

log = logging.getLogger("training")


def _config_overrides(args: argparse.Namespace) -> dict[str, object]:
    """TrainConfig fields given on the command line (tuples from comma lists)."""
    overrides: dict[str, object] = {}
    for item in fields(TrainConfig):
        value = getattr(args, item.name, None)
        if value is None:
            continue
        if item.name in ("image_towers", "image_blocks", "text_towers", "russian_masked"):
            value = tuple(v for v in str(value).split(",") if v)
        overrides[item.name] = value
    return overrides


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """`--data` and `--cache`, the same for every subcommand that reads the shared data."""
    parser.add_argument("--data", type=Path, default=Path("../shared/data"),
                        help="folder holding flickr8k/ and seed/ (default ../shared/data)")
    parser.add_argument("--cache", type=Path, default=Path(".cache/features"),
                        help="tower feature cache (default .cache/features)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train-dual-encoder",
                           help="train projection heads on Flickr8k TRAIN, save an artifact")
    _add_data_arguments(train)
    train.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    train.add_argument("--name", default="dual-default")
    train.add_argument("--version", default="1.0.0")
    train.add_argument("--compare", action="store_true",
                       help="first train the candidate recipes, pick the best on DEV")
    train.add_argument("--translations", type=Path,
                       help="folder of Russian translation TSVs (default: the packaged ones)")
    for item in fields(TrainConfig):
        flag = "--" + item.name.replace("_", "-")
        if item.name in ("image_towers", "image_blocks", "text_towers", "russian_masked"):
            train.add_argument(flag, help="comma-separated")
        elif item.type in ("bool", bool):
            train.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"))
        else:
            kind = {"int": int, "float": float, "str": str}.get(str(item.type), str)
            train.add_argument(flag, type=kind)

    child = sub.add_parser(
        "train-child-detector",
        help="train the photo-side child detector on one encoder's photo embeddings")
    _add_data_arguments(child)
    child.add_argument("--out", type=Path, default=None,
                       help="artifact directory (default: the packaged engine/models/"
                            "child-detector)")
    child.add_argument("--model", default="dual:default",
                       help="encoder the detector is for (default dual:default)")
    child.add_argument("--name", default="child-detector")
    child.add_argument("--version", default="1.0.0")
    child.add_argument("--min-recall", type=float, default=0.97,
                       help="lowest recall on DEV the threshold may have (default 0.97)")
    # 0.001, not 0.005: at 0.005 the detector for dual-default@1.0.0 missed one of the seed's
    # 44 child photos, and in a 100-photo collection with three quarters hidden one missed
    # photo is in most top-10s (4.9%% of shown photos). A simulated average is not a bound.
    child.add_argument("--leak-target", type=float, default=0.001,
                       help="highest simulated share of shown photos that show a child "
                            "(default 0.001: a tenth of the customer's 1%% bar)")
    child.add_argument("--samples", type=int, default=40,
                       help="simulated 100-photo DEV collections (default 40)")
    child.add_argument("--seed", type=int, default=0)
    _add_query_head(sub)
    _add_seed_study(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "train-dual-encoder":
        from training.train_command import DataMissingError, run_train_dual_encoder

        try:
            report = run_train_dual_encoder(
                data_root=args.data.resolve(), out=args.out, cache_dir=args.cache,
                name=args.name,
                version=args.version, compare=args.compare,
                overrides=_config_overrides(args), translations=args.translations,
                command=" ".join(["python -m training", *(argv or sys.argv[1:])]))
        except DataMissingError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    if args.command == "train-child-detector":
        return _train_child_detector(args, argv)
    if args.command == "train-query-head":
        return _train_query_head(args, argv)
    if args.command == "seed-study":
        return _run_seed_study(args, argv)
    return 2


def _train_child_detector(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    from engine.encoders import ModelSpecError
    from training.child_detector import (
        DEFAULT_OUT,
        DataMissingError,
        run_train_child_detector,
    )

    try:
        # Resolved: the feature cache is keyed by the photo paths as spelled.
        report = run_train_child_detector(
            data_root=args.data.resolve(), out=args.out or DEFAULT_OUT, cache_dir=args.cache,
            model=args.model, name=args.name, version=args.version,
            min_recall=args.min_recall, leak_target=args.leak_target, samples=args.samples,
            seed=args.seed,
            command=" ".join(["python -m training", *(argv or sys.argv[1:])]))
    except (DataMissingError, ModelSpecError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({k: report[k] for k in ("detector", "encoder", "candidate", "threshold",
                                             "chosen", "at_recall_only")},
                     indent=2, ensure_ascii=False))
    return 0


def _add_query_head(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `train-query-head` subcommand (see `training.query_head`)."""
    from engine.encoders.dual import DEFAULT_ARTIFACT, DEFAULT_QUERY_HEAD

    query = sub.add_parser(
        "train-query-head",
        help="train a faster text head against an existing model's frozen image head")
    _add_data_arguments(query)
    query.add_argument("--base", type=Path, default=DEFAULT_ARTIFACT,
                       help="dual-encoder artifact whose image space the head joins "
                            "(default: the packaged dual-default)")
    query.add_argument("--out", type=Path, default=DEFAULT_QUERY_HEAD,
                       help="artifact directory (default: the packaged engine/models/"
                            "query-minilm)")
    query.add_argument("--name", default="query-minilm")
    query.add_argument("--version", default="1.0.0")
    query.add_argument("--text-towers", default="minilm",
                       help="comma-separated text towers the head reads (default minilm)")
    query.add_argument("--compare", action="store_true",
                       help="train every candidate recipe and keep the best on DEV")
    query.add_argument("--translations", type=Path,
                       help="folder of Russian translation TSVs (default: the packaged ones)")


def _train_query_head(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    from engine.encoders.dual import ModelArtifactError
    from training.query_head import run_train_query_head
    from training.train_command import DataMissingError

    towers = tuple(t for t in args.text_towers.split(",") if t)
    unknown = sorted(set(towers) - {"minilm", "e5"})
    if not towers or unknown:
        print(f"error: --text-towers takes minilm and/or e5, not {args.text_towers!r}",
              file=sys.stderr)
        return 2
    try:
        report = run_train_query_head(
            data_root=args.data.resolve(), base_artifact=args.base, out=args.out,
            cache_dir=args.cache, name=args.name, version=args.version, text_towers=towers,
            compare=args.compare, translations=args.translations,
            command=" ".join(["python -m training", *(argv or sys.argv[1:])]))
    except (DataMissingError, ModelArtifactError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({k: report[k] for k in ("artifact", "image_space", "chosen",
                                             "flickr8k_test", "seed_test", "russian")},
                     indent=2, ensure_ascii=False))
    return 0


def _add_seed_study(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `seed-study` subcommand (see `training.seed_study`)."""
    study = sub.add_parser("seed-study",
                           help="reproduce the customer's seed study, measure it as search")
    _add_data_arguments(study)
    study.add_argument("--out", type=Path, required=True,
                       help="report folder: report.md, report.html, metrics.json, PNGs")
    study.add_argument("--text-model", default="minilm",
                       help="minilm (packaged) or a local Hugging Face BERT directory")
    study.add_argument("--resnet18-weights", type=Path,
                       help="torchvision ResNet-18 state dict; default: EfficientNet-Lite0")
    study.add_argument("--dual-model", default="dual:default",
                       help="our encoder to compare with (default dual:default)")
    study.add_argument("--folds", type=int, default=5)
    study.add_argument("--seed", type=int, default=0)
    study.add_argument("--depth", type=int, default=30,
                       help="first-stage candidates the re-ranker re-orders (default 30)")
    study.add_argument("--threads", type=int, default=0,
                       help="CPU threads for models (default: 1 on a busy machine, else all)")
    study.add_argument("--mlp-epochs", type=int, default=10)
    study.add_argument("--name", default="seed-reranker", help="re-ranker artifact name")
    study.add_argument("--version", default="1.0.0", help="re-ranker artifact version")


def _run_seed_study(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    import time

    from training.seed_study.pipeline import StudyConfig, StudyError, run_seed_study

    config = StudyConfig(
        data_root=args.data, out=args.out, cache_dir=args.cache, text_model=args.text_model,
        resnet18_weights=args.resnet18_weights, dual_model=args.dual_model, folds=args.folds,
        seed=args.seed, depth=args.depth, threads=args.threads, mlp_epochs=args.mlp_epochs,
        reranker_name=args.name, reranker_version=args.version,
        command=" ".join(["python -m training", *(argv or sys.argv[1:])]))
    started = time.perf_counter()
    try:
        metrics = run_seed_study(config)
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    shapes = metrics["shapes"]
    print(f"pair vectors: train {shapes['train_pairs']}, test {shapes['test_pairs']}")
    print(f"{'model':<40} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MRR':>6} {'n':>5} {'refused':>7}")
    rows = [(metrics["labels"][k], r) for k, r in metrics["retrieval"].items()]
    rows += [(f"dual top-{metrics['depth']} -> {metrics['labels'][k]}", r)
             for k, r in metrics["combination"].items()]
    rows.append(("random ranking", metrics["chance"]))
    for label, r in rows:
        print(f"{label:<40} {r['R@1']:6.3f} {r['R@5']:6.3f} {r['R@10']:6.3f} {r['MRR']:6.3f} "
              f"{int(r['n']):5d} {int(r['refused']):7d}")
    print(f"report: {args.out / 'report.md'} ({time.perf_counter() - started:.0f} s)")
    return 0
