"""Benchmarks that print ratios against a peer measured side by side in the same run."""
