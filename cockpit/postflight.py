"""Post-flight (seed 000_): checks run on a finished run's checkpoint. Placeholder
until the post-flight kinds land."""

from __future__ import annotations

POSTFLIGHT_KINDS: dict = {}
