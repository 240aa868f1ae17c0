"""Builds the emoji product set (`item_jax/catalogs/emoji.py`) from its npm packages.

  python -m item_jax.cli.build_emoji_catalog --out runs/emoji [--tarball_dir DIR] [--limit N] \
      [--vendors google,twitter,openmoji] [--include_skin_tones] [--google_tarball PATH ...]

Without tarballs it runs `npm pack` for the three packages into OUT/tarballs. Writes
OUT/manifest.jsonl, the images and OUT/import_summary.json (docs/emoji_catalog.md).
"""

import json
import pathlib

from absl import flags

from item_jax.catalogs import emoji
from item_jax.cli import common


def define_flags():
    flags.DEFINE_string("out", None, "Output folder.")
    flags.DEFINE_string(
        "tarball_dir",
        None,
        "Folder holding the `npm pack` tarballs; without it they are fetched into OUT/tarballs.",
    )
    for vendor in emoji.VENDORS:
        flags.DEFINE_string(f"{vendor}_tarball", None, f"Path of {emoji.NPM_PACKAGES[vendor]}.")
    flags.DEFINE_list("vendors", list(emoji.VENDORS), "Subset of " + ",".join(emoji.VENDORS))
    flags.DEFINE_bool("include_skin_tones", False, "Also import skin-tone variants.")
    flags.DEFINE_integer("limit", None, "At most this many products.")


def tarballs_from_flags(values, vendors) -> dict[str, pathlib.Path]:
    """Explicit paths first, then --tarball_dir, else `npm pack` into OUT/tarballs."""
    explicit = {
        vendor: pathlib.Path(values[f"{vendor}_tarball"].value)
        for vendor in vendors
        if values[f"{vendor}_tarball"].value
    }
    remaining = [vendor for vendor in vendors if vendor not in explicit]
    if not remaining:
        return explicit
    if values.tarball_dir:
        found = emoji.find_tarballs(values.tarball_dir, remaining)
    else:
        found = emoji.fetch_tarballs(pathlib.Path(values.out) / "tarballs", remaining)
    return {**found, **explicit}


def main(argv):
    values = common.start(argv, "out")
    vendors = [vendor.strip() for vendor in values.vendors if vendor.strip()]
    manifest = emoji.import_emoji_catalog(
        values.out,
        tarballs=tarballs_from_flags(values, emoji.check_vendors(vendors)),
        vendors=vendors,
        include_skin_tones=values.include_skin_tones,
        limit=values.limit,
    )
    summary = json.loads((manifest.parent / emoji.SUMMARY_NAME).read_text(encoding="utf-8"))
    print(
        f"wrote {manifest}: {summary['listings']} listings "
        f"{summary['listings_per_vendor']}, {summary['products']} products "
        f"({summary['products_with_2plus_vendors']} drawn by 2+ vendors), "
        f"{summary['categories']} categories, {summary['skipped_total']} skipped "
        f"{summary['skipped']}, {summary['seconds']} s"
    )


def run():
    common.run(define_flags, main)


if __name__ == "__main__":
    run()
