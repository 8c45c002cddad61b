"""chatstack: a chat system served by Triton Inference Server as an ensemble."""

__version__ = "0.1.0"
