"""Training side of the project: loaders, feature caches, the dual encoder, the seed study.

`training.main(argv)` is `python -m training` as a function (tests call it); the CLI module is
imported only when it is called, so importing a submodule stays light.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run `python -m training` with `argv` and return its exit code."""
    from training.cli import main as cli_main

    return cli_main(argv)
