"""Choice options as ``Literal`` aliases, shared by the recipe model and the CLI."""

from __future__ import annotations

from typing import Literal

OnError = Literal["quarantine", "error"]
OnShortfall = Literal["error", "rescale"]
UnknownLicense = Literal["drop", "keep"]
DecontMode = Literal["drop", "annotate"]
EvalFormat = Literal["auto", "jsonl", "parquet", "text"]
