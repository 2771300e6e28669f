"""GenEval: prompt metadata, detector backends, the judge and the summary.

Public API: `Detection`, `select`, `judge`, `summarize`, `relative_position`.
"""

from .rules import COLORS, TAGS, Detection, box_iou, empty_rates, judge, relative_position, select, summarize

__all__ = ["COLORS", "TAGS", "Detection", "box_iou", "empty_rates", "judge", "relative_position", "select", "summarize"]
