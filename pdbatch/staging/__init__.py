"""Where requests are staged and answers read back: one module per kind of location."""
