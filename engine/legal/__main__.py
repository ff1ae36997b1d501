"""``python -m engine.legal``: try the legal filter from a shell.

    python -m engine.legal "a 5-year-old boy" "девушка в красном платье"
    python -m engine.legal --lexicon extra.txt --file queries.txt      # one query a line
    python -m engine.legal --captions Flickr8k.token.txt               # caption statistics

Lexicon authors use it to see which entry fires and why before deploying an extension;
``--captions`` reads Flickr8k-style "image#n<TAB>caption" lines and reports how many images
have a caption that mentions children and which entries fired most (the weak-label rate).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from engine.legal.filter import LegalFilter, LexiconError


def _caption_stats(legal: LegalFilter, path: Path, top: int) -> dict[str, object]:
    images: set[str] = set()
    flagged: set[str] = set()
    captions = 0
    flagged_captions = 0
    entries: Counter[str] = Counter()
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            name, _, caption = line.rstrip("\n").partition("\t")
            if not caption:
                continue
            image = name.split("#", 1)[0]
            images.add(image)
            captions += 1
            verdict = legal.check_query(caption)
            if not verdict.allowed:
                flagged.add(image)
                flagged_captions += 1
                entries.update(verdict.matched)
    return {
        "images": len(images),
        "images_with_a_child_caption": len(flagged),
        "captions": captions,
        "captions_mentioning_children": flagged_captions,
        "top_entries": entries.most_common(top),
        "fingerprint": legal.fingerprint,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.legal", description=__doc__)
    parser.add_argument("texts", nargs="*", help="queries to check")
    parser.add_argument("--lexicon", action="append", type=Path, default=[],
                        help="extra lexicon file (repeatable)")  # fmt: skip
    parser.add_argument("--file", type=Path, help="check every line of this file")
    parser.add_argument("--captions", type=Path, help="Flickr8k token file: print statistics")
    parser.add_argument("--top", type=int, default=20, help="entries to list with --captions")
    args = parser.parse_args(argv)
    try:
        legal = LegalFilter.default(extra_lexicons=args.lexicon)
    except LexiconError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.captions is not None:
        stats = _caption_stats(legal, args.captions, args.top)
        print(json.dumps(stats, ensure_ascii=False, indent=2))
        return 0
    texts = list(args.texts)
    if args.file is not None:
        texts.extend(args.file.read_text(encoding="utf-8").splitlines())
    for text in texts:
        verdict = legal.check_query(text)
        print(json.dumps({"text": text, "allowed": verdict.allowed, "language": verdict.language,
                          "matched": list(verdict.matched), "reason": verdict.reason},
                         ensure_ascii=False))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
