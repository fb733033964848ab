"""``deepcascade evaluate``: how good is a translation, in numbers a user can compare across methods.

One concept per module:

- ``images.py``      the image sets, read at one evaluation size and streamed in uint8 batches
- ``cache.py``       per-image arrays (features, embeddings) cached under ``OUT/cache/``
- ``fidelity.py``    KID and FID through torch-fidelity and its TTUR-exact Inception-v3
- ``perceptual.py``  LPIPS (AlexNet) as an exact embedding; the fallback distance for the collapse measure
- ``lpips_nn.py``    exhaustive LPIPS nearest neighbours among the target's training images
- ``diversity.py``   the collapse ratio (diversity of translations / of real target images)
- ``classifier.py``  the independent domain classifier (linear probe or a CNN from scratch)
- ``layout.py``      silhouette ground and centre shifts and silhouette target share on the built-in synthetic data
- ``appearance.py``  frame (and true background) colour kept from source to translation
- ``chance.py``      chance levels (random real target images) and the progress from chance to the floor
- ``report.py``      ``metrics.json``, ``index.html`` and the printed summary
- ``plan.py``        the options, the directions' image sets, and what each measure needs before work starts
- ``measures.py``    ``evaluate``: every measure in turn, then the report
- ``entry_points.py`` ``evaluate_run`` (a trained run) and ``evaluate_folders`` (any method's outputs)

Nothing is imported at package import; use ``from deepcascade.evaluation.entry_points import evaluate_run``.
"""
