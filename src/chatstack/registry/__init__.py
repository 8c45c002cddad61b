"""Model versions: numbered copies of trained models, their records, and which one is served."""
