"""The search command: a new listing's nearest products in an embedded catalog.

End to end on the test catalog: export the trained fixture, embed its manifest as Parquet
parts, build the faiss index, then search with a listing's own title and photo.
"""

import json
import os

import pytest
from subprocess_utils import run_cli

from item_jax import catalog_embedding, export, search
from item_jax.evaluation import ann_index


@pytest.fixture(scope="module")
def catalog(trained_workdir, catalog_shards, tmp_path_factory):
    """(export dir, parts dir, faiss index dir, the manifest's listings)."""
    root = tmp_path_factory.mktemp("search")
    export_dir = str(root / "export")
    export.export_model(trained_workdir, export_dir)
    manifest_path = os.path.join(os.path.dirname(catalog_shards), "catalog", "manifest.jsonl")
    parts = str(root / "parts")
    catalog_embedding.embed_manifest_parts(export_dir, manifest_path, parts, show_progress=False)
    index_dir = str(root / "ann")
    ann_index.build_from_parts(parts, index_dir, num_queries=20)
    with open(manifest_path, encoding="utf-8") as f:
        listings = [json.loads(line) for line in f if line.strip()]
    for listing in listings:  # Manifest image paths are relative to the manifest.
        listing["image"] = os.path.join(os.path.dirname(manifest_path), listing["image"])
    return export_dir, parts, index_dir, listings


def test_the_parts_hold_the_titles(catalog):
    _, parts, _, listings = catalog
    table = catalog_embedding.read_parts(parts)
    titles = {listing["id"]: listing["title"] for listing in listings}
    assert table.column("title").to_pylist() == [titles[i] for i in table.column("id").to_pylist()]


@pytest.mark.parametrize("where", ["parts", "index"])
def test_a_listing_finds_its_own_product_first(catalog, where):
    export_dir, parts, index_dir, listings = catalog
    for listing in listings[::37][:4]:
        result = search.search(
            export_dir,
            parts if where == "parts" else index_dir,
            title=listing["title"],
            image_path=listing["image"],
            k=5,
        )
        first = result["results"][0]
        assert result["search"] == ("exact" if where == "parts" else "faiss")
        assert first["group"] == listing["group"], (listing, result["results"])
        assert first["id"] == listing["id"] and first["score"] > 0.999
        assert first["title"] == listing["title"] and first["category"] == listing["category"]
        scores = [row["score"] for row in result["results"]]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True)


@pytest.mark.slow
def test_the_command_prints_a_table_and_json(catalog):
    export_dir, _, index_dir, listings = catalog
    listing = listings[5]
    completed = run_cli(
        "search",
        [
            "--export",
            export_dir,
            "--embeddings",
            index_dir,
            "--title",
            listing["title"],
            "--image",
            listing["image"],
            "--k",
            "3",
            "--json",
        ],
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert [row["rank"] for row in result["results"]] == [1, 2, 3]
    assert result["results"][0]["id"] == listing["id"]
    completed = run_cli(
        "search",
        [
            "--export",
            export_dir,
            "--embeddings",
            index_dir,
            "--title",
            listing["title"],
            "--k",
            "2",
        ],
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    header = [line for line in completed.stdout.splitlines() if line.startswith("rank")]
    assert header and header[0].split() == ["rank", "score", "id", "group", "category", "title"]


def test_title_only_and_photo_only_listings_are_searched(catalog):
    export_dir, parts, _, listings = catalog
    by_title = search.search(export_dir, parts, title=listings[0]["title"], k=4)
    by_photo = search.search(export_dir, parts, image_path=listings[0]["image"], k=4)
    assert len(by_title["results"]) == len(by_photo["results"]) == 4
    assert by_title["results"] != by_photo["results"]


def test_bad_input_is_named(catalog, tmp_path):
    export_dir, parts, index_dir, listings = catalog
    with pytest.raises(search.SearchError, match="no such file"):
        search.search(export_dir, parts, title="mug", image_path=str(tmp_path / "missing.jpg"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    with pytest.raises(search.SearchError, match="broken.jpg"):
        search.search(export_dir, parts, title="mug", image_path=str(broken))
    with pytest.raises(search.SearchError, match="empty"):
        search.search(export_dir, parts, title="   ")
    with pytest.raises(search.SearchError, match="neither Parquet parts"):
        search.search(export_dir, str(tmp_path), title="mug")
    completed = run_cli(
        "search", ["--export", export_dir, "--embeddings", parts, "--image", str(broken)]
    )
    assert completed.returncode == 2 and "broken.jpg" in completed.stderr


def test_a_catalog_of_another_export_is_refused(catalog, trained_workdir, tmp_path):
    export_dir, parts, index_dir, listings = catalog
    other = str(tmp_path / "other_export")
    export.export_model(trained_workdir, other, dtype="bfloat16")  # Other parameters.
    for embeddings in (parts, index_dir):
        with pytest.raises(search.SearchError, match="another space"):
            search.search(other, embeddings, title=listings[0]["title"])
