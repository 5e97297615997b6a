"""[I/O] A trained network for other runtimes: serialised StableHLO and ONNX.

- **StableHLO** (``jax.export``): the function ``image (H, W, 3) -> image`` with the
  parameters and style weights baked in as constants, serialised with its calling
  convention. ``jax.export.deserialize(data).call(x)`` runs it with no nst_jax code
  (any JAX of a compatible serialisation version; other StableHLO consumers read the
  module text, :func:`stablehlo_text`). The height and width are fixed at export.
- **ONNX** through ``jax2onnx`` (a maintained converter, optional: ``pip install
  jax2onnx``), checked in ``onnxruntime`` against JAX by the tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import files
from nst_jax.models import johnson as J


def _fn(params: J.Params, arch: J.Arch, style_w: np.ndarray, strength: float) -> Any:
    consts = jax.tree.map(jnp.asarray, params)
    w = jnp.asarray(style_w, jnp.float32)

    def stylise(image: jax.Array) -> jax.Array:
        return J.apply(consts, image, w, arch=arch, strength=strength)

    return stylise


def export_stablehlo(params: J.Params, arch: J.Arch, hw: tuple[int, int], *,
                     style_w: np.ndarray | None = None, strength: float = 1.0) -> bytes:
    """The serialised ``jax.export.Exported`` of the network on ``(H, W, 3)`` float32."""
    w = np.asarray(J.style_weights(arch) if style_w is None else style_w, np.float32)
    spec = jax.ShapeDtypeStruct((*hw, 3), jnp.float32)
    exp = jax.export.export(jax.jit(_fn(params, arch, w, strength)))(spec)
    return bytes(exp.serialize())


def load_stablehlo(data: bytes) -> Any:
    """The callable of :func:`export_stablehlo`'s bytes (``.call(image)``)."""
    return jax.export.deserialize(bytearray(data))


def stablehlo_text(data: bytes) -> str:
    """The StableHLO module text of serialised export bytes."""
    return load_stablehlo(data).mlir_module()


def export_onnx(params: J.Params, arch: J.Arch, hw: tuple[int, int], path: str | os.PathLike, *,
                style_w: np.ndarray | None = None, strength: float = 1.0,
                overwrite: bool = False) -> Path:
    """Write the network on ``(1, H, W, 3)`` float32 as an ONNX model (``jax2onnx``).

    Raises:
      ImportError: ``jax2onnx`` is not installed.
    """
    from jax2onnx import to_onnx

    w = np.asarray(J.style_weights(arch) if style_w is None else style_w, np.float32)
    one = _fn(params, arch, w, strength)
    model = to_onnx(lambda x: one(x[0])[None], [(1, *hw, 3)], model_name="nst_jax_johnson2016")
    return files.write_bytes(path, model.SerializeToString(), overwrite=overwrite)


__all__ = ["export_onnx", "export_stablehlo", "load_stablehlo", "stablehlo_text"]
