"""Helpers shared by the tests: tiny models and data built offline (`generation`, `training`, `evaluation`),
the Hub-protocol server (`hub_server`) and its client settings (`hub`)."""

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]  # the tests folder (scripts/ holds the subprocess scripts)
