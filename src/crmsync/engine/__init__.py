"""The engine: the durable change queue (:mod:`.queue`), flows, mapping and the workers that
claim changes from the queue and write them to their targets."""
