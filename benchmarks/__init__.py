"""Benchmarks of komrade_dht: run each as ``python -m benchmarks.<name>`` (see benchmarks/README.md)."""
