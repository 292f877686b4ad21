"""Hash, URL and keyword lists: entries with provenance and opinions, formats, exchanges, feeds."""
