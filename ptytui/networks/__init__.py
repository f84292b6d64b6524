"""ptytui's own Keras layers and the architectures it trains (retraining and the demo's models).
TensorFlow is imported lazily, through core.tfload."""
