"""Generation backends: the engine slot behind the `generate` model."""
