"""Multi-turn conversation history keyed by session id."""
