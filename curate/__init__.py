"""curate: recipe-driven, Ray-distributed curation of LLM pretraining mixtures."""

__version__ = "0.1.0"
