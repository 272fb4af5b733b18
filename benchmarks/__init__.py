"""Trident benchmarks: side-by-side measurements against what users would pick instead (issue 7).

Run ``uv run python -m benchmarks [--only P1,P3] [--quick]``; results go to ``benchmarks/results/<machine>.json``
and ``.md``. Never part of the test suite (``tests/test_benchmarks_smoke.py`` only checks the runner works).
"""
