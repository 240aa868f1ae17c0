"""Writes the embedded procedural catalog (`item_jax/catalogs/synthetic.py`) to a folder.

  python -m item_jax.cli.build_synthetic_catalog --out runs/demo/catalog \
      [--num_products 300 --listings_per_product 4 --image_size 96 --seed 0 \
       --missing_modality_fraction 0.0]

The main job does this itself (1,200 products); this is for catalogs of other sizes.
"""

from absl import app, flags

from item_jax.catalogs import synthetic
from item_jax.cli import common


def define_flags():
    flags.DEFINE_string("out", None, "Directory to write the catalog into.")
    flags.DEFINE_integer("num_products", 300, "Products (groups).")
    flags.DEFINE_integer("listings_per_product", 4, "Listings of each product.")
    flags.DEFINE_integer("image_size", 96, "Side of the written PNGs.")
    flags.DEFINE_integer("seed", 0, "Seed of the catalog.")
    flags.DEFINE_float(
        "missing_modality_fraction", 0.0, "Listings written without a photo or without a title."
    )


def main(argv):
    values = common.start(argv, "out")
    try:
        manifest_path = synthetic.generate_catalog(
            values.out,
            num_products=values.num_products,
            listings_per_product=values.listings_per_product,
            image_size=values.image_size,
            seed=values.seed,
            missing_modality_fraction=values.missing_modality_fraction,
        )
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    print(synthetic.summarize(manifest_path))


def run():
    common.run(define_flags, main)


if __name__ == "__main__":
    run()
