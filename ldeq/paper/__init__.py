"""Layer 7, the paper: Tables 1-3 and the figures' building blocks for the papermill notebooks."""
