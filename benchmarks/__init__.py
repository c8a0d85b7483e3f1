"""Benchmarks of esl-assets against the latency bound and a Celery + Redis baseline.

Run ``python benchmarks/run.py --help`` from the repository root.
"""
