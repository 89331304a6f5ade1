"""Metrics and offline evaluation."""
