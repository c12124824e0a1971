"""Answering a query: options, the ranking stages and the cascade that runs them."""
