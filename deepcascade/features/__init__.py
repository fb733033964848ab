"""Frozen-backbone features: running the backbone (``extract``), image squares, normalization statistics, the
on-disk cache, the training batch sources, the per-run set-up, and export to safetensors.

Nothing heavy happens at import of the package itself; submodules import torch/numpy.
"""
