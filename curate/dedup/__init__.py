"""Deduplication: exact content hashes, MinHash-LSH near duplicates, and the distributed dedup on Ray.

The package shows the steps, one module each:

- :mod:`curate.dedup.signatures`: the kernels each partition's worker runs (no Ray): content hash, shingles,
  MinHash signatures, band keys, shingle sets and Jaccard; the dedup input file's schema.
- :mod:`curate.dedup.files`: the removal schema, hash-range buckets and their sizing, file helpers.
- :mod:`curate.dedup.shuffle`: the exact-hash and LSH map/reduce shuffles (candidate edges).
- :mod:`curate.dedup.components`: distributed connected components (large-star/small-star rounds) and the
  keeper ranking per component bucket; :func:`connected_components` is the in-memory reference.
- :mod:`curate.dedup.verify`: the true-Jaccard check in bounded buckets.
- :mod:`curate.dedup.removed`: the per-input-file removal files, the summary, :func:`read_removed`.
- :mod:`curate.dedup.driver`: :func:`find_duplicates`, which runs the steps as Ray tasks.

No step holds the corpus in one process: every reduce task reads one bucket, sized from the input
(about :data:`BUCKET_BYTES` each), every per-file task one input file, and the driver only adds counters.
"""

from curate.dedup import components, files, removed, shuffle, signatures, verify
from curate.dedup.components import connected_components
from curate.dedup.driver import _components, find_duplicates
from curate.dedup.files import BUCKET_BYTES, EXACT, NEAR, REMOVED_SCHEMA, bucket_count, key_bucket, node_bucket
from curate.dedup.removed import has_removed, read_removed
from curate.dedup.signatures import (
    _CHAIN,
    _POS,
    _U64,
    CHAR_MODE_SHARE,
    EMPTY_SIGNATURE,
    _as_string_array,
    _char_tables,
    _fmix64,
    _per_doc,
    _permutations,
    _tokenize,
    _word_hashes,
    band_keys,
    content_hash,
    dedup_columns,
    dedup_part_schema,
    jaccard,
    minhash_signatures,
    normalize_for_exact,
    shingle_hashes,
    shingle_sets,
    signatures_from_shingles,
)
from curate.dedup.verify import _verify_bucket, _verify_fetch

__all__ = [
    "BUCKET_BYTES", "CHAR_MODE_SHARE", "EMPTY_SIGNATURE", "EXACT", "NEAR", "REMOVED_SCHEMA", "band_keys",
    "bucket_count", "components", "connected_components", "content_hash", "dedup_columns", "dedup_part_schema",
    "files", "find_duplicates", "has_removed", "jaccard", "key_bucket", "minhash_signatures", "node_bucket",
    "normalize_for_exact", "read_removed", "removed", "shingle_hashes", "shingle_sets", "shuffle", "signatures",
    "signatures_from_shingles", "verify",
]
