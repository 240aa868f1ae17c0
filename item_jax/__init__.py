"""item_jax: ITEm, unsupervised image-text product embeddings, in JAX.

The public entry point for downstream users is `load_exported(path)`: an exported model
(`python -m item_jax.cli.export`) as an embed function for (images, titles).
"""


def load_exported(path: str, **kwargs):
    """Loads an export directory; see `item_jax.export.load_exported`."""
    from item_jax import export  # pylint: disable=g-import-not-at-top

    return export.load_exported(path, **kwargs)
