"""Plugins the tests name in a recipe's ``plugins:``: a stage (``exclaim_stage``) and a reader (``tsv_reader``)."""
