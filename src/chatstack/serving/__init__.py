"""Running Triton Inference Server with the chatstack model repository."""
