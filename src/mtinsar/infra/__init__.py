"""Infrastructure stability: segments of lines/polygons, per-segment metrics, risk, reports.

from mtinsar.infra import InfraConfig, run_infra
summary = run_infra("OUT", "railway.geojson", "OUT/infra", InfraConfig())
"""

from mtinsar.infra.metrics import (
    RISK_LABELS,
    InfraConfig,
    SegmentMetrics,
    infra_config,
    segment_metrics,
)
from mtinsar.infra.report import analyse, run_infra
from mtinsar.infra.segments import assign_pixels, make_segments, metric_crs, read_features

__all__ = [
    "RISK_LABELS",
    "InfraConfig",
    "SegmentMetrics",
    "analyse",
    "assign_pixels",
    "infra_config",
    "make_segments",
    "metric_crs",
    "read_features",
    "run_infra",
    "segment_metrics",
]
