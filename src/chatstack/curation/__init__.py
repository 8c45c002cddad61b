"""Data curation: exact and near-duplicate removal, heuristic filters, PII scrubbing."""
