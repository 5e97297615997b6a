"""nst_jax studio: a local web app with a live preview, cost curves, sweeps and a gallery
(``nst-jax studio``; the ``studio`` extra). See :mod:`nst_jax.studio.app`."""
