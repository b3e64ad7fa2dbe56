"""Layer 6, landmarks on video: temporal methods (frame by frame, RwR, eq. 8, filters), tracking, evaluation, diagnostics, the selection, ONNX, `ldeq-track`."""
