"""Frozen-backbone features: normalization statistics, the on-disk cache, and the batch sources of training.

Nothing heavy happens at import; submodules import torch/numpy only.
"""

from .cache import FeatureCache, backbone_identity, crop_consistency, extract
from .normalization import Normalizer, RunningStats
from .source import DomainFeatures, prepare_domains

__all__ = ["FeatureCache", "Normalizer", "RunningStats", "DomainFeatures", "prepare_domains", "extract",
           "crop_consistency", "backbone_identity"]
