"""Input and output moderation."""
