"""Ray-side roles that live next to environments and data: rollout, buffer shards, evaluation."""
