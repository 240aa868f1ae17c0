"""The embedded catalog: valid manifest, deterministic, and both modalities needed."""

import collections
import hashlib
import itertools
import json
import pathlib

import pytest
from PIL import Image

from item_jax.catalogs import synthetic as synthetic_catalog
from item_jax.data import manifest


def _records(manifest_path):
    return [json.loads(line) for line in pathlib.Path(manifest_path).read_text().splitlines()]


def _digest(directory):
    digest = hashlib.sha256()
    for path in sorted(pathlib.Path(directory).rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory):
    out = tmp_path_factory.mktemp("catalog")
    return synthetic_catalog.generate_catalog(
        out, num_products=32, listings_per_product=3, image_size=40
    )


def test_manifest_is_valid_and_images_exist(small_catalog):
    records = _records(small_catalog)
    assert len(records) == 96
    for record in records:
        with Image.open(small_catalog.parent / record["image"]) as image:
            assert image.size == (40, 40)
    contents = manifest.read_manifest(str(small_catalog))
    assert len(contents.listings) == 96 and not contents.rejects


def test_same_arguments_write_identical_files(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        synthetic_catalog.generate_catalog(
            tmp_path / name, num_products=8, listings_per_product=2, image_size=32, seed=seed
        )
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_listings_of_a_product_share_group_and_category_but_not_wording(small_catalog):
    by_group = collections.defaultdict(list)
    for record in _records(small_catalog):
        by_group[record["group"]].append(record)
    assert len(by_group) == 32
    for listings in by_group.values():
        assert len({r["category"] for r in listings}) == 1
        assert len({r["title"] for r in listings}) > 1


def test_image_only_attributes_never_appear_in_titles(small_catalog):
    for record in _records(small_catalog):
        words = set(record["title"].lower().replace("-", " ").split())
        assert not words & synthetic_catalog.IMAGE_ONLY_WORDS, record["title"]


def test_both_modalities_are_needed_to_tell_products_apart(small_catalog):
    products = [
        json.loads(line)
        for line in (small_catalog.parent / "products.jsonl").read_text().splitlines()
    ]
    attributes = synthetic_catalog.describe_attributes()
    assert set(attributes["text_only"]) & set(attributes["image_only"]) == set()
    title_twins = look_twins = 0
    for a, b in itertools.combinations(products, 2):
        same_title = all(a[k] == b[k] for k in ("category",) + attributes["text_only"])
        same_look = all(a[k] == b[k] for k in ("category",) + attributes["image_only"])
        title_twins += same_title and not same_look
        look_twins += same_look and not same_title
    # Many pairs are told apart only by the photo, and many only by the title.
    assert title_twins >= 8 and look_twins >= 8


def test_categories_form_a_tree_with_several_departments():
    tree = synthetic_catalog.category_tree()
    assert len(tree) >= 3
    leaves = [spec.path for spec in synthetic_catalog.CATEGORIES]
    assert len(leaves) == len(set(leaves)) >= 12


def test_missing_modalities_drop_one_side_only(tmp_path):
    path = synthetic_catalog.generate_catalog(
        tmp_path,
        num_products=10,
        listings_per_product=4,
        image_size=32,
        missing_modality_fraction=0.25,
    )
    records = _records(path)
    no_image = [r for r in records if not r["image"]]
    no_title = [r for r in records if not r["title"]]
    assert len(no_image) + len(no_title) == 10
    assert not [r for r in no_image if not r["title"]]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="listings_per_product"):
        synthetic_catalog.generate_catalog("/tmp/unused", listings_per_product=0)
