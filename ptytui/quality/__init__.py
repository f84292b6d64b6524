"""Quality against ground truth, one module per concept: ``stitching`` (patches to one canvas),
``alignment`` (registration, phase removal, crop), ``image_metrics`` (MAE/MSE/PSNR/SSIM/MS-SSIM,
FRC), ``evaluation`` (one model measured, with sanity flags), ``metrics`` (the record and its rows
in PtychoPINN's CSV layout), ``compare`` (every model and the reference on one split) and
``comparison_store`` (the comparison's record and files)."""
