"""Layer 0, facts and infrastructure: progress bars, threads, the shipped files, the WFLW scheme, crop geometry, the metrics."""
