"""Running models over splits: the session, inference with on-device statistics, the layer trace,
devices and the exact merge of sharded records."""
