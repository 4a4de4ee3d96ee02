"""Prometheus families both processes export the same way."""

from __future__ import annotations

import platform

from prometheus_client.core import HistogramMetricFamily, InfoMetricFamily, Metric

from runtime.histogram import Histogram


def histogram_family(name: str, help_: str, hist: Histogram) -> Metric:
    """A Histogram exported as a Prometheus histogram family."""
    return HistogramMetricFamily(name, help_, buckets=hist.cumulative(), sum_value=hist.sum)


def build_info(prefix: str, version: str) -> Metric:
    """`<prefix>_build_info{version, python}` 1."""
    fam = InfoMetricFamily(f"{prefix}_build", "version of the running code")
    fam.add_metric([], {"version": version, "python": platform.python_version()})
    return fam
