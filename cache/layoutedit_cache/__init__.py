"""Content-hashed concept cache (placeholder)."""
