"""Choice options as ``Literal`` aliases, shared by the recipe model and the CLI."""

from __future__ import annotations

from typing import Literal

Format = Literal[
    "the-stack-v1",
    "the-stack-v2",
    "culturax",
    "madlad",
    "pg19",
    "gutenberg-txt",
    "wikipedia",
    "mediawiki-xml",
    "refinedweb",
    "open-web-math",
    "proof-pile-2",
    "jsonl",
    "parquet",
    "text",
]

#: Formats whose documents are source code: language ID is skipped for them by default.
CODE_FORMATS = frozenset({"the-stack-v1", "the-stack-v2"})

OnError = Literal["quarantine", "error"]
OnShortfall = Literal["error", "rescale"]
UnknownLicense = Literal["drop", "keep"]
ShardFormat = Literal["megatron", "olmo-npy", "datatrove", "mds"]
DecontMode = Literal["drop", "annotate"]
EvalFormat = Literal["auto", "jsonl", "parquet", "text"]
