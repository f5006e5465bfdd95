"""Reports people read: the run report, the compression table and the benchmark report (Markdown + HTML)."""
