"""tincoso dashboards."""
