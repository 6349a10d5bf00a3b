"""Task data: reading and splitting rows, synthesis and curation."""
