"""Inference: the frozen cascade of trained translators, and the user-facing :class:`Translator`."""
