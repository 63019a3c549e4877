"""The ground floor: paths, records, seeds, progress, kill points, JSON Lines."""
