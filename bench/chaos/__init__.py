"""The chaos run (issue 14 §4): ``python -m bench.chaos``; see ``bench/chaos/__main__.py``."""
