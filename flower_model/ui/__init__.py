"""What the pages share: pure plotly figures, and the session helpers (jobs, runs, dataset)."""
