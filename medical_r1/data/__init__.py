"""Rows in, training text out: sources (bundled sample, local files, the hub), cleaning and splitting, the R1
prompt template, and the tasks (validate a row, format it, score generations)."""
