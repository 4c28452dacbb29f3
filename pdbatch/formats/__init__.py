"""Request and response formats, one module per model family."""
