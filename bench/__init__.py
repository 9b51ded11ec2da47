"""Benchmarks for ``make bench``. Each ``bench/bench_*.py`` module exposes ``run(quick: bool) -> list[Row]``."""
