"""chatstack's native generation engine: paged KV cache, continuous batching, prefix reuse."""
