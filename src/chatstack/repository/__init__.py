"""Render the served Triton model repository from templates and a deployment config."""
