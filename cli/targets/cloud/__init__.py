"""Cloud targets (aws, gcp, alicloud): day-2 operations on infrastructure described by the
outputs contract. Nothing here imports a cloud SDK at module level."""
