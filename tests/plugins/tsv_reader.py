"""A plugin reader (issue 15): ``format: tsv``, one document per line as ``<id><TAB><text>``.

One reader module and one ``register`` line are all a new format needs: no table elsewhere lists formats. The
lines are parsed with Arrow's CSV reader (tab-separated, no quoting), normalized with the shared
``curate.sources`` helpers (``rawbatch``, ``assemble``), and a line without a tab is quarantined by them as ``empty_text``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from curate.sources.base import Partition, ReadBatch, ReadContext, register
from curate.sources.arrow_utils import column
from curate.sources.assemble import assemble
from curate.sources.rawbatch import Normalized, RawBatch


@register("tsv")
def read_tsv(part: Partition, src, ctx: ReadContext) -> Iterator[ReadBatch]:
    t = pacsv.read_csv(part.path, read_options=pacsv.ReadOptions(column_names=["id", "text"]),
                       parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, invalid_row_handler=None),
                       convert_options=pacsv.ConvertOptions(column_types={"id": pa.string(), "text": pa.string()}))
    for start in range(0, t.num_rows, ctx.batch_rows):
        b = t.slice(start, ctx.batch_rows)
        rows = np.arange(start, start + b.num_rows, dtype=np.int64)
        raw = RawBatch(table=b, rows=rows, ordinals=rows - start, n_records=b.num_rows, line_based=True)
        norm = Normalized(text=column(b, "text"), text_field="text", native_id=column(b, "id"))
        yield assemble(part, src, raw, norm, first_record=start)
