"""Image measures for a finished run: built-in measures, plugin scorers, DIR/scores.parquet."""
