"""Print the requirements of one optional-dependency extra of pyproject.toml, for the Makefile's reader venvs.

``python tests/readers/extra.py readers`` prints every requirement of ``[project.optional-dependencies].readers``,
one per line; ``--first`` prints only the first and ``--rest`` all but the first (the MDS venv installs its first,
``mosaicml-streaming``, without dependencies: see the Makefile). Standard library only: it runs before any venv.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def main(argv: list[str]) -> int:
    extra, *flags = argv
    data = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    reqs = data["project"]["optional-dependencies"][extra]
    if "--first" in flags:
        reqs = reqs[:1]
    elif "--rest" in flags:
        reqs = reqs[1:]
    print("\n".join(reqs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
