"""Text handling: chat template, incremental detokenizer, stop strings."""
