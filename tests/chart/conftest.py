"""The chart's tests: renderings of charts/hotelchat and the k8s/ manifests, checked offline.
Only tests/chart/test_processes.py needs PostgreSQL and Redis (the session's `backing`)."""
