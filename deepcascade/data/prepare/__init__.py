"""Real data sets in the ``trainA/ trainB/ testA/ testB`` layout that ``data.root`` reads.

One module per source layout (``coco``, ``petimages``, ``afhq``, ``drit``, ``folders``); what they share
lives in ``output`` (refusing an ``--out`` that overlaps an input, the ``prepare.json`` completion marker, the
JSONL manifest, atomic writes, completing an interrupted run), ``split`` (deterministic train/test splits) and
``files`` (decode-checking and copying whole image files). The rules and their defaults are documented in
``docs/datasets.md``.
"""
