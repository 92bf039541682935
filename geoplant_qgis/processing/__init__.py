"""Processing provider and algorithms: thin adapters from parameters to core."""
