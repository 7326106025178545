"""Runnable examples, run from the repository root (`python -m examples.counter_embedded`):
the counter service (`counter`) embedded, as processes, under the simulator, and a session of
the trade-finance ledger. README.md shows them; tests/test_examples.py runs each."""
