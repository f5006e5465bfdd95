"""`edgemtl bench`: per-task accuracy against latency, size and memory for every artifact of a run."""
