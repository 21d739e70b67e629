"""The engine: change queue, workers, flows, mapping, lock rules."""
