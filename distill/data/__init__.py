"""Task data: reading and splitting rows, and curation."""
