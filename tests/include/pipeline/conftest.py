"""Fixtures of the release pipeline tests (see test_retry_safety.py)."""
