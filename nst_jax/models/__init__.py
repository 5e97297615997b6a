"""Feed-forward style networks: train once on the package's own costs, apply in milliseconds.

- :mod:`~nst_jax.models.johnson`: the image transformation network (pure, Flax linen).
- :mod:`~nst_jax.models.tiled`: the network on images beyond memory, layer by layer in tiles.
- :mod:`~nst_jax.models.train`: the pure training step over :func:`nst_jax.problem.objective`.
- :mod:`~nst_jax.models.data`: [I/O] photos from a folder, cropped and flipped, prefetched.
- :mod:`~nst_jax.models.store`: [I/O] model files and training checkpoints.
- :mod:`~nst_jax.models.export`: [I/O] serialised StableHLO (``jax.export``) and ONNX.
"""
