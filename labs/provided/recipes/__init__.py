"""Headless training recipes: `python -m labs train {mlp,lenet,alexnet}`.

Each module exposes `main(argv: list[str]) -> int`.
"""
