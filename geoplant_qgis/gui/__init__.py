"""The dock panel, its map tools, background runs and result styling (main thread, thin)."""
