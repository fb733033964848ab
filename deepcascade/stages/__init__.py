"""Training stages of the method, each a :class:`deepcascade.engine.trainer.Stage`.

``experiment.py`` sets up what all stages share (backbone, statistics, feature cache, data); ``invert.py``
(feature inversion I_l), ``deep.py`` (conv_5_1 translation), ``cascade.py`` (coarse-to-fine levels) and
``synth.py`` (the deepVAE of one domain, level by level) are the stages; ``pipeline.py`` runs them in order.
"""
