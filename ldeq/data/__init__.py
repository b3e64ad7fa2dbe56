"""Layer 3, data on disk: video files and boxes, one reader and writer per dataset format (WFLW, pre-cropped WFLW, WFLW-V)."""
