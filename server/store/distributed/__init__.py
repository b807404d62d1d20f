"""The distributed backend: PostgreSQL and Redis implementations of the state seams."""
