"""Metrics, traces and log plumbing shared by every process."""
