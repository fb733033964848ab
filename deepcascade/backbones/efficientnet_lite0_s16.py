"""EfficientNet-Lite0 cut at stride 16 (``backbone.name: efficientnet_lite0_s16``): same weights as
``efficientnet_lite0``, levels at strides 2, 2, 4, 8, 16 (see :class:`EfficientNetLite0S16Pyramid`)."""

from .efficientnet_lite0 import EfficientNetLite0S16Pyramid, imagenet_weights, load_weights

__all__ = ["create", "imagenet_weights", "load_weights"]


def create(relu: bool) -> EfficientNetLite0S16Pyramid:
    return EfficientNetLite0S16Pyramid(relu=relu)
