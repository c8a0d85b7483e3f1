"""Dictionary readers: every supported format as one stream of rows.

``read_dictionary(path)`` detects the format (``detect_format``) and returns
an iterator of ``Row`` and ``RejectedRow`` items. Each format has its own
module; the rules they share (field names, id checks, duplicates) are in
``esl_assets.inputs.common``.
"""

from __future__ import annotations

from esl_assets.inputs.common import FIELD_ALIASES, RejectReason, stable_uuid
from esl_assets.inputs.formats import FORMATS, detect_format, read_dictionary

__all__ = [
    "FIELD_ALIASES",
    "FORMATS",
    "RejectReason",
    "detect_format",
    "read_dictionary",
    "stable_uuid",
]
