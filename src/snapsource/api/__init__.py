"""HTTP layer: routes and wire models; the work itself is in snapsource.search."""
