"""Named configurations: partial overrides of the defaults in ``config.py``, applied before a YAML file.

``deepcascade config --preset NAME`` prints the complete resolved configuration of a preset.
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {"default": {}}
