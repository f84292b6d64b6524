"""Quality against ground truth: stitching, alignment and image metrics, and the comparison of every
model and the reference."""
