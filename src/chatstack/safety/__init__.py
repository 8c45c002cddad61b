"""Input and output moderation: normalise → classify → policy → verdict (see docs/safety.md)."""
