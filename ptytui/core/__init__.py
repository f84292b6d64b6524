"""The vocabulary every stage shares: the statistics record, engine events, findings and decision
options, thresholds, atomic writes and the one lazy TensorFlow import. No stage below this one."""
