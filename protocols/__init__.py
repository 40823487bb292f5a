"""tincoso protocols."""
