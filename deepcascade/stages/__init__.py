"""Training stages of the method, each a :class:`deepcascade.engine.trainer.Stage`.

``experiment.py`` sets up what all stages share (backbone, statistics, feature cache, data); ``invert.py``
(feature inversion I_l), ``deep.py`` (conv_5_1 translation) and ``cascade.py`` (coarse-to-fine levels) are
the stages; ``pipeline.py`` runs them in order.
"""
