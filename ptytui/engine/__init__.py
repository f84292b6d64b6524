"""The engine: pure Python, numpy and (lazily) TensorFlow. Never imports Textual or Rich."""
