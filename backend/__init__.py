"""tincoso backend."""
