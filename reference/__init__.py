"""Reference implementations flaseg is checked and timed against; not part of the flaseg package.

`reference/torch/` holds every PyTorch peer (see its docstring). The tests and
scripts/benchmark.py import it with the repository root on sys.path; flaseg never imports it
and the wheel does not ship it (pyproject.toml packages `flaseg*` only).
"""
