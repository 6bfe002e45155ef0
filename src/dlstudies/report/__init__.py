"""Rendering saved results: figures (matplotlib, Agg) and one self-contained HTML report."""

from dlstudies.report.html import render_report

__all__ = ["render_report"]
