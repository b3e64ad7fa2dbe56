"""Layer 4, the synthetic world: a parametric head, its rendering, scenes and the synthetic benchmark."""
