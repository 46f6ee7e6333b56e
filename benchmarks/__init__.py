"""lmliqa.benchmarks: speed next to fidelity (lmliqa bench) and the throughput/scope measurement scripts."""
