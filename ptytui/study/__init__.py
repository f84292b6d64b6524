"""A whole study at once: a study file names its cells (workspaces with labels); each cell is
diagnosed and compared as ``ptytui diagnose`` and ``ptytui compare`` would, on Dask workers.

Importing this package is cheap: no TensorFlow, no Dask (both load where they are used).
"""
