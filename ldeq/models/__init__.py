"""Layer 2, the models: LDEQ, the baselines, the one model registry and checkpoint loader, training memory."""
