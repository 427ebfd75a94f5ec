"""Result files: phase-map TIFF, overlay and uncertainty PNGs, modal CSV, .hspy, reports, logger pictures."""
