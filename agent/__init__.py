"""tincoso agent."""
