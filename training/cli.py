"""`python -m training`: train the dual encoder's heads (and, later, the seed study).

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
        if item.name in ("image_towers", "image_blocks", "text_towers"):
            value = tuple(v for v in str(value).split(",") if v)
        overrides[item.name] = value
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train-dual-encoder",
                           help="train projection heads on Flickr8k TRAIN, save an artifact")
    train.add_argument("--data", type=Path, default=Path("../shared/data"),
                       help="folder holding flickr8k/ and seed/ (default ../shared/data)")
    train.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    train.add_argument("--cache", type=Path, default=Path(".cache/features"),
                       help="tower feature cache (default .cache/features)")
    train.add_argument("--name", default="dual-default")
    train.add_argument("--version", default="1.0.0")
    train.add_argument("--compare", action="store_true",
                       help="first train the candidate recipes, pick the best on DEV")
    train.add_argument("--translations", type=Path,
                       help="folder of Russian translation TSVs (default: the packaged ones)")
    for item in fields(TrainConfig):
        flag = "--" + item.name.replace("_", "-")
        if item.name in ("image_towers", "image_blocks", "text_towers"):
            train.add_argument(flag, help="comma-separated")
        elif item.type in ("bool", bool):
            train.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"))
        else:
            kind = {"int": int, "float": float, "str": str}.get(str(item.type), str)
            train.add_argument(flag, type=kind)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "train-dual-encoder":
        from training.train_command import DataMissingError, run_train_dual_encoder

        try:
            report = run_train_dual_encoder(
                data_root=args.data, out=args.out, cache_dir=args.cache, name=args.name,
                version=args.version, compare=args.compare,
                overrides=_config_overrides(args), translations=args.translations,
                command=" ".join(["python -m training", *(argv or sys.argv[1:])]))
        except DataMissingError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    return 2
