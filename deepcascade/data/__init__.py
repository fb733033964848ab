"""Image data: robust file loading, unpaired two-domain datasets, built-in synthetic domains."""
