"""The shared training engine: run directories, checkpoints, distributed helpers and the training loop.

Every stage (inversion, deepest translation, cascade levels, deepVAE levels) is a :class:`Stage` driven by
:func:`train_stage`, which owns checkpointing, resume, logging, progress, signals, devices and precision.
"""
