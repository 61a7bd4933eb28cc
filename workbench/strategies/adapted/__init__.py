"""Adapted-feature strategies: the ILFM's features themselves are changed."""
