"""Tests for the emoji product set importer, on small tarballs laid out like the real ones.

The fake tarballs mirror the npm packages' layouts: emoji-datasource has
package/emoji.json and package/img/{vendor}/64/{image} (plus spritesheets to ignore);
OpenMoji has package/data/openmoji.json and package/color/svg/{HEXCODE}.svg (plus a
black/ set to ignore). No network is used.
"""

import io
import json
import pathlib
import tarfile

import numpy as np
import pytest
from PIL import Image
from subprocess_utils import run_cli

from item_jax.catalogs import emoji as emoji_catalog
from item_jax.catalogs import svg_render
from item_jax.data import manifest

SANTA_TONES = {
    "1F3FB": {
        "unified": "1F385-1F3FB",
        "image": "1f385-1f3fb.png",
        "has_img_google": True,
        "has_img_twitter": True,
    }
}
DATASOURCE_RECORDS = [
    {
        "name": "GRINNING FACE",
        "unified": "1F600",
        "image": "1f600.png",
        "short_names": ["grinning"],
        "category": "Smileys & Emotion",
        "subcategory": "face-smiling",
        "has_img_google": True,
        "has_img_twitter": True,
    },
    {
        "name": "HEAVY BLACK HEART",
        "unified": "2764-FE0F",
        "image": "2764-fe0f.png",
        "short_names": ["heart"],
        "category": "Smileys & Emotion",
        "subcategory": "heart",
        "has_img_google": True,
        "has_img_twitter": True,
    },
    {
        "name": "FATHER CHRISTMAS",
        "unified": "1F385",
        "image": "1f385.png",
        "short_names": ["santa"],
        "category": "People & Body",
        "subcategory": "person-fantasy",
        "has_img_google": True,
        "has_img_twitter": True,
        "skin_variations": SANTA_TONES,
    },
    # Listed, but its Twitter PNG is absent from the fake Twitter tarball.
    {
        "name": "LUGGAGE",
        "unified": "1F9F3",
        "image": "1f9f3.png",
        "short_names": ["luggage"],
        "category": "Travel & Places",
        "subcategory": "hotel",
        "has_img_google": True,
        "has_img_twitter": True,
    },
]
MISSING_TWITTER_IMAGE = "1f9f3.png"
OPENMOJI_RECORDS = [
    {
        "hexcode": "1F600",
        "group": "smileys-emotion",
        "subgroups": "face-smiling",
        "annotation": "grinning face",
        "tags": "face, grin, happy, smile, teeth",
        "skintone": "",
        "skintone_base_hexcode": "",
    },
    {
        "hexcode": "2764",
        "group": "smileys-emotion",
        "subgroups": "heart",
        "annotation": "red heart",
        "tags": "emotion, heart, love",
        "skintone": "",
        "skintone_base_hexcode": "",
    },
    {
        "hexcode": "1F385",
        "group": "people-body",
        "subgroups": "person-fantasy",
        "annotation": "Santa Claus",
        "tags": "celebration, christmas",
        "skintone": "",
        "skintone_base_hexcode": "",
    },
    {
        "hexcode": "1F385-1F3FB",
        "group": "people-body",
        "subgroups": "person-fantasy",
        "annotation": "Santa Claus: light skin tone",
        "tags": "",
        "skintone": 1,
        "skintone_base_hexcode": "1F385",
    },
    {
        "hexcode": "E000",
        "group": "extras-openmoji",
        "subgroups": "symbol-other",
        "annotation": "OpenMoji",
        "tags": "",
        "skintone": "",
        "skintone_base_hexcode": "",
    },
]
SQUARE_SVG = (
    b'<svg id="emoji" viewBox="0 0 72 72" xmlns="http://www.w3.org/2000/svg">'
    b'<g id="color"><rect x="12" y="12" width="48" height="48" fill="#D22F27"/></g>'
    b'<g id="line"><circle cx="36" cy="36" r="23" fill="none" stroke="#000000"'
    b' stroke-width="2"/></g></svg>'
)


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (64, 64), colour + (255,)).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_tarball(path: pathlib.Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def _package_json(name: str, license_name: str) -> bytes:
    return json.dumps({"name": name, "version": "0", "license": license_name}).encode()


def _datasource_files(vendor: str, colour: tuple[int, int, int]) -> dict[str, bytes]:
    files = {
        emoji_catalog.PACKAGE_JSON: _package_json(f"emoji-datasource-{vendor}", "MIT"),
        emoji_catalog.DATASOURCE_JSON: json.dumps(DATASOURCE_RECORDS).encode(),
        f"package/img/{vendor}/sheets-256/64.png": _png((0, 0, 0)),
    }
    for record in DATASOURCE_RECORDS:
        entries = [record, *record.get("skin_variations", {}).values()]
        for entry in entries:
            if vendor == "twitter" and entry["image"] == MISSING_TWITTER_IMAGE:
                continue
            files[f"package/img/{vendor}/64/{entry['image']}"] = _png(colour)
    return files


def _openmoji_files() -> dict[str, bytes]:
    files = {
        emoji_catalog.PACKAGE_JSON: _package_json("openmoji", "CC-BY-SA-4.0"),
        emoji_catalog.OPENMOJI_JSON: json.dumps(OPENMOJI_RECORDS).encode(),
    }
    for record in OPENMOJI_RECORDS:
        files[f"package/color/svg/{record['hexcode']}.svg"] = SQUARE_SVG
        files[f"package/black/svg/{record['hexcode']}.svg"] = b"<not-used/>"
    return files


@pytest.fixture(scope="module")
def tarball_dir(tmp_path_factory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("tarballs")
    _write_tarball(
        folder / emoji_catalog.TARBALL_NAMES["google"], _datasource_files("google", (0, 160, 0))
    )
    _write_tarball(
        folder / emoji_catalog.TARBALL_NAMES["twitter"], _datasource_files("twitter", (0, 0, 200))
    )
    _write_tarball(folder / emoji_catalog.TARBALL_NAMES["openmoji"], _openmoji_files())
    return folder


def _import(tarball_dir: pathlib.Path, out_dir: pathlib.Path, **options):
    tarballs = emoji_catalog.find_tarballs(tarball_dir)
    manifest_path = emoji_catalog.import_emoji_catalog(out_dir, tarballs=tarballs, **options)
    listings = [json.loads(line) for line in manifest_path.read_text("utf-8").splitlines()]
    summary = json.loads((out_dir / emoji_catalog.SUMMARY_NAME).read_text("utf-8"))
    return {listing["id"]: listing for listing in listings}, summary


@pytest.fixture(scope="module")
def imported(tarball_dir, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("emoji")
    listings, summary = _import(tarball_dir, out_dir)
    return out_dir, listings, summary


def test_normalise_sequence_drops_variation_selectors():
    assert emoji_catalog.normalise_sequence("2764-fe0f") == "2764"
    assert emoji_catalog.normalise_sequence("1f3f3-FE0F-200d-1f308") == "1F3F3-200D-1F308"
    with pytest.raises(ValueError, match="not a codepoint sequence"):
        emoji_catalog.normalise_sequence("heart")


def test_vendors_share_the_emoji_as_product_group(imported):
    out_dir, listings, summary = imported
    heart_ids = {
        listing_id for listing_id, listing in listings.items() if listing["group"] == "2764"
    }
    assert heart_ids == {"google-2764", "twitter-2764", "openmoji-2764"}
    # Each vendor is the seller of its drawings: negatives in training come from one vendor.
    assert {listings[i]["seller"] for i in heart_ids} == {"google", "twitter", "openmoji"}
    for listing_id in heart_ids:
        image = Image.open(out_dir / listings[listing_id]["image"])
        assert image.format == "PNG"
    assert summary["products"] == 4
    assert summary["products_with_2plus_vendors"] == 3  # Luggage: Google only.


def test_categories_are_group_subgroup_slugs(imported):
    _, listings, summary = imported
    assert {listing["category"] for listing in listings.values()} == {
        "smileys-emotion/face-smiling",
        "smileys-emotion/heart",
        "people-body/person-fantasy",
        "travel-places/hotel",
    }
    assert summary["category_conflicts_between_vendors"] == 0


def test_titles_differ_between_vendors_of_one_product(imported):
    _, listings, summary = imported
    titles = [listings[f"{vendor}-1F600"]["title"] for vendor in emoji_catalog.VENDORS]
    assert titles == [
        "Grinning Face (grinning)",
        "grinning emoji",
        "grinning face - face, grin, happy, smile",
    ]
    assert summary["products_with_repeated_titles"] == 0


def test_missing_image_is_skipped_and_counted(imported):
    out_dir, listings, summary = imported
    assert "twitter-1F9F3" not in listings
    assert "google-1F9F3" in listings
    assert summary["skipped_total"] == 1
    assert summary["skipped_listings"] == [
        {
            "id": "twitter-1F9F3",
            "reason": f"{emoji_catalog.SKIPPED_MISSING_FILE}: package/img/twitter/64/1f9f3.png",
        }
    ]
    assert not (out_dir / "images/twitter/1F9F3.png").exists()


def test_openmoji_extras_and_skin_tones_are_excluded_by_default(imported):
    _, listings, summary = imported
    assert all("1F3FB" not in listing["group"] for listing in listings.values())
    assert "openmoji-E000" not in listings
    assert summary["excluded"]["openmoji"] == {
        emoji_catalog.EXCLUDED_SKIN_TONE: 1,
        emoji_catalog.EXCLUDED_OPENMOJI_EXTRA: 1,
    }
    assert summary["excluded"]["google"] == {emoji_catalog.EXCLUDED_SKIN_TONE: 1}
    assert summary["listings_per_vendor"] == {"google": 4, "openmoji": 3, "twitter": 3}


def test_skin_tones_become_their_own_products_when_asked(tarball_dir, tmp_path):
    listings, summary = _import(tarball_dir, tmp_path, include_skin_tones=True)
    tone_titles = {
        listing["id"]: listing["title"]
        for listing in listings.values()
        if listing["group"] == "1F385-1F3FB"
    }
    assert tone_titles == {
        "google-1F385-1F3FB": "Father Christmas: light skin tone (santa)",
        "twitter-1F385-1F3FB": "santa emoji (light skin tone)",
        # OpenMoji's tone variants have no tags of their own and borrow their base's.
        "openmoji-1F385-1F3FB": "Santa Claus: light skin tone - celebration, christmas",
    }
    assert summary["products"] == 5
    assert emoji_catalog.EXCLUDED_SKIN_TONE not in summary["excluded"].get("google", {})


def test_openmoji_svg_is_rendered_to_png(imported):
    out_dir, listings, _ = imported
    image = Image.open(out_dir / listings["openmoji-1F600"]["image"])
    assert image.size == (emoji_catalog.OPENMOJI_PNG_SIZE,) * 2
    pixels = np.asarray(image.convert("RGBA"))
    assert tuple(pixels[36, 36]) == (0xD2, 0x2F, 0x27, 255)  # Inside the red square.
    assert pixels[2, 2, 3] == 0  # Outside the drawing: transparent.
    assert pixels[36, 13, :3].max() < 60  # On the black circle's outline.


def test_gradient_paint_is_an_error_not_a_guess():
    svg = SQUARE_SVG.replace(b'fill="#D22F27"', b'fill="url(#shine)"')
    with pytest.raises(ValueError, match="unsupported SVG paint server"):
        svg_render.render_svg(svg, emoji_catalog.OPENMOJI_PNG_SIZE)


def test_import_is_deterministic(tarball_dir, imported, tmp_path):
    first_dir, _, _ = imported
    _import(tarball_dir, tmp_path)
    for name in [
        "manifest.jsonl",
        *(f"images/{vendor}/1F600.png" for vendor in emoji_catalog.VENDORS),
    ]:
        assert (tmp_path / name).read_bytes() == (first_dir / name).read_bytes(), name


def test_limit_keeps_whole_products(tarball_dir, tmp_path):
    listings, summary = _import(tarball_dir, tmp_path, limit=2)
    assert summary["products"] == 2
    groups = {listing["group"] for listing in listings.values()}
    assert len(listings) == sum(
        len([v for v in emoji_catalog.VENDORS if f"{v}-{group}" in listings]) for group in groups
    )


def test_missing_tarball_names_the_npm_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="npm pack openmoji@17.0.0"):
        emoji_catalog.find_tarballs(tmp_path, ["openmoji"])


def test_cli_writes_a_manifest_the_converter_reader_accepts(tarball_dir, tmp_path):
    out_dir = tmp_path / "emoji"
    completed = run_cli(
        "build_emoji_catalog", ["--out", str(out_dir), "--tarball_dir", str(tarball_dir)]
    )
    assert completed.returncode == 0, completed.stderr
    printed = completed.stdout
    assert "10 listings" in printed and "1 skipped" in printed
    contents = manifest.read_manifest(str(out_dir / emoji_catalog.MANIFEST_NAME))
    assert contents.rejects == []
    assert len(contents.listings) == contents.num_input_listings == 10
    assert all(pathlib.Path(listing.image_path).is_file() for listing in contents.listings)


def test_path_parser_reads_arc_flags_run_into_the_next_number():
    # "1110,0" is large-arc 1, sweep 1, then the end point 10,0.
    points, closed = svg_render.parse_path_data("M0,0 a10,10 0 1110,0 Z")[0]
    assert closed
    assert points[-1] == pytest.approx((10.0, 0.0))
    # The large arc of a radius-10 circle over a chord of 10 reaches 10 + sqrt(75) away.
    assert max(abs(y) for _, y in points) == pytest.approx(10 + 75**0.5, abs=0.05)


def test_even_odd_fill_leaves_a_hole():
    ring = (
        b'<svg viewBox="0 0 72 72" xmlns="http://www.w3.org/2000/svg">'
        b'<path fill="#0000FF" fill-rule="evenodd" d="M6,36a30,30 0 1,0 60,0'
        b'a30,30 0 1,0 -60,0z M26,36a10,10 0 1,1 20,0a10,10 0 1,1 -20,0z"/></svg>'
    )
    pixels = np.asarray(svg_render.render_svg(ring, emoji_catalog.OPENMOJI_PNG_SIZE))
    assert tuple(pixels[36, 10]) == (0, 0, 255, 255)  # On the ring.
    assert pixels[36, 36, 3] == 0  # In the hole.


def test_wrong_tarball_says_which_file_it_lacks(tmp_path):
    wrong = tmp_path / "wrong.tgz"
    _write_tarball(wrong, {"package/readme.md": b"hello"})
    with pytest.raises(ValueError, match="has no package/emoji.json"):
        emoji_catalog.import_emoji_catalog(
            tmp_path / "out", tarballs={"google": wrong}, vendors=("google",)
        )


def test_fetch_without_npm_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(emoji_catalog.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="npm is not installed"):
        emoji_catalog.fetch_tarballs(tmp_path, ["google"])


def test_fetch_reuses_tarballs_already_there(tmp_path, monkeypatch):
    existing = tmp_path / emoji_catalog.TARBALL_NAMES["twitter"]
    existing.write_bytes(b"fetched earlier")
    monkeypatch.setattr(emoji_catalog.subprocess, "run", pytest.fail)
    assert emoji_catalog.fetch_tarballs(tmp_path, ["twitter"]) == {"twitter": existing}
