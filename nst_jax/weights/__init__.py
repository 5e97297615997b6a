"""[I/O] VGG weights: the file format, converters, fetching, and where they live.

- :mod:`~nst_jax.weights.format`: load + validate, write atomically (the h5 format);
- :mod:`~nst_jax.weights.convert`: Keras .h5, ONNX, PyTorch .pth -> our format;
- :mod:`~nst_jax.weights.fetch`: download, verify, convert (an explicit step: library
  code never downloads);
- :mod:`~nst_jax.weights.locate`: the per-user cache and the search order.
"""

from pathlib import Path

from nst_jax import vgg
from nst_jax.weights.convert import (
    convert,
    params_from_torch_state_dict,
    read_keras_h5,
    read_onnx,
    read_torch,
)
from nst_jax.weights.fetch import SOURCES, NetworkError, download, fetch_weights, verify_checksum
from nst_jax.weights.format import (
    FORMAT,
    FORMAT_VERSION,
    LICENSE,
    NpParams,
    WeightsError,
    file_sha256,
    load_weights,
    read_metadata,
    write_weights,
)
from nst_jax.weights.format import (
    _digest as _digest,
)
from nst_jax.weights.locate import (
    WEIGHT_NAMES,
    WEIGHTS_ENV,
    cache_dir,
    default_fetch_dir,
    fetch_command,
    fetch_hint,
    find_weights,
    search_dirs,
)

__all__ = [
    "FORMAT", "FORMAT_VERSION", "LICENSE", "SOURCES", "WEIGHTS_ENV", "WEIGHT_NAMES",
    "NetworkError", "NpParams", "Path", "WeightsError", "cache_dir", "convert",
    "default_fetch_dir", "download", "fetch_command", "fetch_hint", "fetch_weights",
    "file_sha256", "find_weights", "load_weights", "params_from_torch_state_dict",
    "read_keras_h5", "read_metadata", "read_onnx", "read_torch", "search_dirs",
    "verify_checksum", "vgg", "write_weights",
]
