"""Agent tools, one per file; each is a typed, documented function turned into a Tool."""
