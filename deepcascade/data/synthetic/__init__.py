"""Built-in synthetic pairs of domains that differ in shape, rendered with their object masks; no download.

For a data set file: :func:`source_with_mask(meta, name) <writer.source_with_mask>` gives ``(image, mask)``
of a file ``name`` of a data set written by ``deepcascade prepare synthetic``, where ``meta`` is its
``synthetic.json`` (:func:`find_meta(folder)`; it names the pair, version, seed and size);
:func:`parse_file_name` maps a file name to ``(domain, generator index)``.

For a sample: :func:`render_with_mask(pair, domain, index, size, seed)` -> ``(PIL RGB image, bool mask)``.

Judging a domain by shape: ``get_pair(meta.get("pair", DEFAULT_PAIR))`` returns the pair's
:class:`~pairs.Pair`, whose ``mask_measure(mask)`` / ``image_measure(image)`` compute its shape measure from a
mask or from the image alone (translations), ``judge_mask`` / ``judge_image`` say "A", "B" or None (A below
``threshold``, B above), and ``estimate_mask(image)`` is the object's silhouette estimated from the image alone
(the animals: :func:`textured_pixels`; the object pairs: :func:`object_pixels`, which also keep the outer
eighth of every image background only).

Modules: ``scene`` (what the renderers share), ``animals`` (the default pair, zebra-like vs giraffe-like),
``objects`` (the held-out object pairs ``discs-stars``, ``mugs-bottles``, ``rings-crosses``), ``pairs`` (the registry),
``measures`` (silhouette measures), ``writer`` (the prepared data set).
"""

from .measures import (ASPECT_THRESHOLD, domain_score, mask_aspect, mask_fill, mask_spikiness, object_pixels,
                       textured_pixels)
from .pairs import DEFAULT_PAIR, PAIRS, Pair, get_pair, render, render_with_mask
from .scene import DOMAINS, MIN_SIZE, TEST_INDEX_BASE
from .writer import (FILE_RE, GENERATOR, META, file_name, find_meta, is_complete, parse_file_name, read_meta,
                     same_params, source_with_mask, write_dataset)

__all__ = ["ASPECT_THRESHOLD", "DEFAULT_PAIR", "DOMAINS", "FILE_RE", "GENERATOR", "META", "MIN_SIZE", "PAIRS",
           "Pair", "TEST_INDEX_BASE", "domain_score", "file_name", "find_meta", "get_pair", "is_complete",
           "mask_aspect", "mask_fill", "mask_spikiness", "object_pixels", "parse_file_name", "read_meta", "render",
           "render_with_mask", "same_params", "source_with_mask", "textured_pixels", "write_dataset"]
