"""deepcascade: unpaired cross-domain image translation in the feature space of a frozen CNN.

Implements "Cross-Domain Cascaded Deep Translation" (Katzir, Lischinski, Cohen-Or, ECCV 2020).
Nothing heavy happens at import; ``Translator``, ``Synthesizer`` and ``OnnxTranslator`` (an exported file run by
onnxruntime, without torch) are imported lazily.
"""

from .version import __version__


def __getattr__(name):
    if name == "Translator":
        from .inference.translator import Translator

        return Translator
    if name == "Synthesizer":
        from .inference.synthesizer import Synthesizer

        return Synthesizer
    if name == "OnnxTranslator":
        from .inference.onnx_engine import OnnxTranslator

        return OnnxTranslator
    raise AttributeError(f"module 'deepcascade' has no attribute {name!r}")
