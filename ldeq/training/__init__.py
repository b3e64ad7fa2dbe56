"""Layer 5, training: augmentation and the trainer (`ldeq-train`)."""
