"""Document quality scoring: heuristic rules (Gopher, C4, FineWeb, code) and a fastText classifier.

- :mod:`curate.quality.words`: language-aware word splitting over whole batches (CJK/Thai per character).
- :mod:`curate.quality.heuristics`: the vectorized rule families and their registry (``FAMILIES``).
- :mod:`curate.quality.fasttext_clf`: DCLM-style classifier training (``curate quality train``) and scoring.

Presets (which rules, thresholds, options) are YAML files in ``filters/quality/``; the pipeline stage that applies
them is :class:`curate.stages.quality.QualityStage`.
"""
