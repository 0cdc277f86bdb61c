"""The benchmark: its configuration and identity, the run, the metrics' scoring, the results
store, the report, and spreading a run over processes."""
