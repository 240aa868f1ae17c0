"""Emoji product set: the same emoji drawn by Google, Twitter and OpenMoji as listings.

Builds a manifest (docs/design.md, "Data format") from three npm packages:

  emoji-datasource-google@16.0.0   PNG files under package/img/google/64/
  emoji-datasource-twitter@16.0.0  PNG files under package/img/twitter/64/
  openmoji@17.0.0                  SVG files under package/color/svg/ (rendered here)

Each emoji drawn by each vendor is one listing. The emoji's codepoint sequence
(uppercase hex joined by '-', FE0F variation selectors removed) is the listing's
product `group`, so "same product" means the same emoji drawn by another vendor.
`category` is `group/subgroup` of the Unicode emoji ordering as lower-case slugs
(`smileys-emotion/face-smiling`). Titles come from each source's own text fields and
are worded differently per vendor. Skin-tone variants are left out unless asked for;
OpenMoji's own extras (not Unicode emoji) are always left out. See docs/emoji_catalog.md.

Usage:
  python -m item_jax.cli.build_emoji_catalog --out DIR [--tarball_dir DIR] [--limit N]
"""

import collections
import dataclasses
import json
import pathlib
import re
import shutil
import subprocess
import tarfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable, Mapping, Sequence

from absl import logging

from item_jax.catalogs import svg_render

VENDORS = ("google", "twitter", "openmoji")
NPM_PACKAGES = {
    "google": "emoji-datasource-google@16.0.0",
    "twitter": "emoji-datasource-twitter@16.0.0",
    "openmoji": "openmoji@17.0.0",
}
TARBALL_NAMES = {
    "google": "emoji-datasource-google-16.0.0.tgz",
    "twitter": "emoji-datasource-twitter-16.0.0.tgz",
    "openmoji": "openmoji-17.0.0.tgz",
}
DATASOURCE_VENDORS = ("google", "twitter")
DATASOURCE_JSON = "package/emoji.json"
OPENMOJI_JSON = "package/data/openmoji.json"
OPENMOJI_SVG_DIR = "package/color/svg/"
PACKAGE_JSON = "package/package.json"
# emoji-datasource ships one PNG folder per size; the one closest to this is used.
PREFERRED_PNG_SIZE = 64
# OpenMoji's own PNG export is 72 x 72, the size of its SVG view box.
OPENMOJI_PNG_SIZE = 72
OPENMOJI_EXTRA_GROUPS = ("extras-openmoji", "extras-unicode")
MAX_OPENMOJI_TAGS = 4
VARIATION_SELECTOR = "FE0F"
SKIN_TONE_WORDS = {
    "1F3FB": "light skin tone",
    "1F3FC": "medium-light skin tone",
    "1F3FD": "medium skin tone",
    "1F3FE": "medium-dark skin tone",
    "1F3FF": "dark skin tone",
}
MANIFEST_NAME = "manifest.jsonl"
SUMMARY_NAME = "import_summary.json"

# Reasons a drawing is not a listing. Exclusions are by design; skips are losses.
EXCLUDED_SKIN_TONE = "skin-tone variant (include_skin_tones=False)"
EXCLUDED_OPENMOJI_EXTRA = "OpenMoji extra, not a Unicode emoji"
SKIPPED_NO_VENDOR_IMAGE = "package marks the emoji as not drawn by this vendor"
SKIPPED_MISSING_FILE = "image file missing from the tarball"
SKIPPED_DUPLICATE = "duplicate emoji sequence after normalisation"
SKIPPED_RENDER_FAILED = "SVG could not be rendered"


@dataclasses.dataclass(frozen=True)
class Drawing:
    """One emoji drawn by one vendor: a listing before its image is written."""

    vendor: str
    group: str
    category: str
    title: str
    source_member: str  # The image's path inside the vendor's tarball.

    @property
    def listing_id(self) -> str:
        return f"{self.vendor}-{self.group}"

    @property
    def image_path(self) -> str:
        return f"images/{self.vendor}/{self.group}.png"


class ImportLog:
    """Counts every drawing that does not become a listing, with its reason."""

    def __init__(self):
        self.excluded = collections.defaultdict(collections.Counter)
        self.skipped = collections.defaultdict(collections.Counter)
        self.skipped_listings = []

    def exclude(self, vendor: str, reason: str) -> None:
        self.excluded[vendor][reason] += 1

    def skip(self, vendor: str, listing_id: str, reason: str) -> None:
        self.skipped[vendor][reason] += 1
        self.skipped_listings.append({"id": listing_id, "reason": reason})
        logging.warning("skipped %s: %s", listing_id, reason)


# ---------------------------------------------------------------------------
# Names: codepoint sequences, category slugs, titles.
# ---------------------------------------------------------------------------


def normalise_sequence(codepoints: str) -> str:
    """'1f3f3-fe0f-200d-1f308' -> '1F3F3-200D-1F308': uppercase, FE0F removed."""
    parts = [part for part in codepoints.strip().upper().split("-") if part]
    if not parts or not all(re.fullmatch(r"[0-9A-F]{4,6}", part) for part in parts):
        raise ValueError(f"not a codepoint sequence: {codepoints!r}")
    kept = [part for part in parts if part != VARIATION_SELECTOR]
    return "-".join(kept or parts)


def slugify(text: str) -> str:
    """'Smileys & Emotion' -> 'smileys-emotion', 'sky & weather' -> 'sky-weather'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def category_slug(group: str, subgroup: str) -> str:
    """The listing category `group/subgroup`, both as slugs."""
    group_slug, subgroup_slug = slugify(group), slugify(subgroup)
    if not group_slug or not subgroup_slug:
        raise ValueError(f"empty emoji group or subgroup: {group!r}, {subgroup!r}")
    return f"{group_slug}/{subgroup_slug}"


def _readable_name(name: str) -> str:
    """'FATHER CHRISTMAS' -> 'Father Christmas'; mixed-case names are kept."""
    if name != name.upper():
        return name
    return " ".join(word[:1] + word[1:].lower() for word in name.split(" "))


def _short_name_words(short_name: str) -> str:
    return short_name.replace("_", " ").replace("-", " ")


def _skin_tone_words(tone_key: str) -> str:
    return ", ".join(SKIN_TONE_WORDS.get(part, part) for part in tone_key.split("-"))


def google_title(name: str, short_names: Sequence[str], tone_key: str = "") -> str:
    """Google: the Unicode name and its first short name, 'Father Christmas (santa)'."""
    title = _readable_name(name)
    if tone_key:
        title += f": {_skin_tone_words(tone_key)}"
    if short_names:
        title += f" ({_short_name_words(short_names[0])})"
    return title


def twitter_title(name: str, short_names: Sequence[str], tone_key: str = "") -> str:
    """Twitter: all short names reworded, 'runner / running emoji'."""
    words = list(dict.fromkeys(_short_name_words(short) for short in short_names))
    title = " / ".join(words or [_readable_name(name).lower()]) + " emoji"
    if tone_key:
        title += f" ({_skin_tone_words(tone_key)})"
    return title


def openmoji_title(annotation: str, tags: str) -> str:
    """OpenMoji: the CLDR annotation and a few tags, 'grinning face - cheerful, grin'."""
    tag_list = [tag.strip() for tag in tags.split(",") if tag.strip()]
    if not tag_list:
        return annotation
    return f"{annotation} - {', '.join(tag_list[:MAX_OPENMOJI_TAGS])}"


# ---------------------------------------------------------------------------
# Reading the npm tarballs.
# ---------------------------------------------------------------------------


def read_tarball_members(tarball: pathlib.Path, wanted: Callable[[str], bool]) -> dict[str, bytes]:
    """Reads the files `wanted` selects, in one sequential pass over the tarball."""
    tarball = pathlib.Path(tarball)
    if not tarball.is_file():
        raise FileNotFoundError(f"tarball not found: {tarball}")
    members = {}
    try:
        with tarfile.open(tarball, "r:*") as archive:
            for member in archive:
                if member.isfile() and wanted(member.name):
                    members[member.name] = archive.extractfile(member).read()
    except tarfile.TarError as error:
        raise ValueError(f"{tarball} is not a readable tarball: {error}") from error
    return members


def _load_json_member(members: Mapping[str, bytes], name: str, tarball: pathlib.Path, package: str):
    if name not in members:
        raise ValueError(f"{tarball} has no {name}; is it the {package} package?")
    return json.loads(members[name])


def _package_license(members: Mapping[str, bytes]) -> str:
    if PACKAGE_JSON not in members:
        return "unknown (no package.json)"
    return str(json.loads(members[PACKAGE_JSON]).get("license", "unknown"))


def _png_folders(members: Iterable[str], vendor: str) -> dict[int, str]:
    """Maps each size folder under package/img/{vendor}/ to its path prefix."""
    folders = {}
    for name in members:
        match = re.fullmatch(rf"(package/img/{vendor}/(\d+)/)[^/]+\.png", name)
        if match:
            folders[int(match.group(2))] = match.group(1)
    return folders


def _choose_png_folder(folders: Mapping[int, str], tarball: pathlib.Path) -> str:
    if not folders:
        raise ValueError(f"{tarball} has no PNG size folder under package/img/")
    best_size = min(folders, key=lambda size: (abs(size - PREFERRED_PNG_SIZE), -size))
    return folders[best_size]


def _required(record: Mapping, key: str, source: str):
    if key not in record:
        raise ValueError(
            f"{source}: entry {record.get('unified') or record.get('hexcode')!r}"
            f" has no {key!r} field"
        )
    return record[key]


# ---------------------------------------------------------------------------
# emoji-datasource (Google and Twitter artwork).
# ---------------------------------------------------------------------------


def datasource_drawings(
    vendor: str,
    records: Sequence[Mapping],
    image_folder: str,
    include_skin_tones: bool,
    log: ImportLog,
) -> list[Drawing]:
    """The drawings of one vendor listed in emoji-datasource's emoji.json."""
    title_for = google_title if vendor == "google" else twitter_title
    drawings = []
    for record in records:
        name = _required(record, "name", DATASOURCE_JSON)
        short_names = _required(record, "short_names", DATASOURCE_JSON)
        category = category_slug(
            _required(record, "category", DATASOURCE_JSON),
            _required(record, "subcategory", DATASOURCE_JSON),
        )
        variants = [("", record)]
        for tone_key, variation in sorted(record.get("skin_variations", {}).items()):
            if include_skin_tones:
                variants.append((tone_key, variation))
            else:
                log.exclude(vendor, EXCLUDED_SKIN_TONE)
        for tone_key, entry in variants:
            group = normalise_sequence(_required(entry, "unified", DATASOURCE_JSON))
            drawing = Drawing(
                vendor=vendor,
                group=group,
                category=category,
                title=title_for(name, short_names, tone_key),
                source_member=image_folder + _required(entry, "image", DATASOURCE_JSON),
            )
            if entry.get(f"has_img_{vendor}", True):
                drawings.append(drawing)
            else:
                log.skip(vendor, drawing.listing_id, SKIPPED_NO_VENDOR_IMAGE)
    return drawings


# ---------------------------------------------------------------------------
# OpenMoji.
# ---------------------------------------------------------------------------


def openmoji_drawings(
    records: Sequence[Mapping], include_skin_tones: bool, log: ImportLog
) -> list[Drawing]:
    """The Unicode emoji drawn by OpenMoji, listed in data/openmoji.json."""
    tags_by_hexcode = {record.get("hexcode"): record.get("tags", "") for record in records}
    drawings = []
    for record in records:
        hexcode = _required(record, "hexcode", OPENMOJI_JSON)
        emoji_group = _required(record, "group", OPENMOJI_JSON)
        if emoji_group in OPENMOJI_EXTRA_GROUPS:
            log.exclude("openmoji", EXCLUDED_OPENMOJI_EXTRA)
            continue
        if record.get("skintone") and not include_skin_tones:
            log.exclude("openmoji", EXCLUDED_SKIN_TONE)
            continue
        # Skin-tone variants carry no tags of their own; they share their base's.
        tags = record.get("tags") or tags_by_hexcode.get(record.get("skintone_base_hexcode"), "")
        drawings.append(
            Drawing(
                vendor="openmoji",
                group=normalise_sequence(hexcode),
                category=category_slug(emoji_group, _required(record, "subgroups", OPENMOJI_JSON)),
                title=openmoji_title(_required(record, "annotation", OPENMOJI_JSON), tags),
                source_member=f"{OPENMOJI_SVG_DIR}{hexcode}.svg",
            )
        )
    return drawings


# ---------------------------------------------------------------------------
# Fetching the packages.
# ---------------------------------------------------------------------------


def fetch_tarballs(dest_dir, vendors: Sequence[str] = VENDORS) -> dict[str, pathlib.Path]:
    """Fetches the pinned npm packages with `npm pack` into `dest_dir`; reuses existing ones."""
    dest_dir = pathlib.Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    tarballs = {}
    for vendor in check_vendors(vendors):
        tarball = dest_dir / TARBALL_NAMES[vendor]
        if not tarball.is_file():
            _npm_pack(NPM_PACKAGES[vendor], dest_dir)
            if not tarball.is_file():
                raise RuntimeError(f"npm pack {NPM_PACKAGES[vendor]} did not write {tarball}")
        tarballs[vendor] = tarball
    return tarballs


def _npm_pack(package: str, dest_dir: pathlib.Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            f"npm is not installed, so {package} cannot be fetched. Install Node.js and npm, "
            f"or run `npm pack {package}` elsewhere and pass the folder with --tarball_dir."
        )
    logging.info("fetching %s with npm pack", package)
    result = subprocess.run(
        [npm, "pack", package, "--pack-destination", str(dest_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"`npm pack {package}` failed (exit {result.returncode}):\n"
            f"{result.stderr.strip()[-2000:]}"
        )


def find_tarballs(tarball_dir, vendors: Sequence[str] = VENDORS) -> dict[str, pathlib.Path]:
    """The pinned tarballs in `tarball_dir`, by their `npm pack` file names."""
    tarball_dir = pathlib.Path(tarball_dir)
    tarballs = {vendor: tarball_dir / TARBALL_NAMES[vendor] for vendor in check_vendors(vendors)}
    missing = [vendor for vendor, path in tarballs.items() if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{tarball_dir} lacks {', '.join(TARBALL_NAMES[v] for v in missing)}; fetch them "
            f"with `npm pack {' '.join(NPM_PACKAGES[v] for v in missing)}`"
        )
    return tarballs


def check_vendors(vendors: Sequence[str]) -> tuple[str, ...]:
    unknown = sorted(set(vendors) - set(VENDORS))
    if unknown or not vendors:
        raise ValueError(f"vendors must be a non-empty subset of {VENDORS}, got {tuple(vendors)}")
    return tuple(vendor for vendor in VENDORS if vendor in vendors)


# ---------------------------------------------------------------------------
# The import.
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class _VendorSource:
    """What one vendor's tarball contributes: drawings and their image bytes."""

    drawings: list[Drawing]
    images: dict[str, bytes]
    image_folder: str
    license: str


def _load_datasource(
    vendor: str, tarball: pathlib.Path, include_skin_tones: bool, log: ImportLog
) -> _VendorSource:
    prefix = f"package/img/{vendor}/"
    members = read_tarball_members(
        tarball,
        lambda name: (
            name in (DATASOURCE_JSON, PACKAGE_JSON)
            or (name.startswith(prefix) and name.endswith(".png") and "/sheet" not in name)
        ),
    )
    records = _load_json_member(members, DATASOURCE_JSON, tarball, NPM_PACKAGES[vendor])
    image_folder = _choose_png_folder(_png_folders(members, vendor), tarball)
    drawings = datasource_drawings(vendor, records, image_folder, include_skin_tones, log)
    return _VendorSource(drawings, members, image_folder, _package_license(members))


def _load_openmoji(
    tarball: pathlib.Path, include_skin_tones: bool, log: ImportLog
) -> _VendorSource:
    members = read_tarball_members(
        tarball,
        lambda name: (
            name in (OPENMOJI_JSON, PACKAGE_JSON)
            or (name.startswith(OPENMOJI_SVG_DIR) and name.endswith(".svg"))
        ),
    )
    records = _load_json_member(members, OPENMOJI_JSON, tarball, NPM_PACKAGES["openmoji"])
    drawings = openmoji_drawings(records, include_skin_tones, log)
    return _VendorSource(drawings, members, OPENMOJI_SVG_DIR, _package_license(members))


def _unique_drawings(drawings: Iterable[Drawing], log: ImportLog) -> list[Drawing]:
    seen = set()
    unique = []
    for drawing in drawings:
        if drawing.listing_id in seen:
            log.skip(drawing.vendor, drawing.listing_id, SKIPPED_DUPLICATE)
            continue
        seen.add(drawing.listing_id)
        unique.append(drawing)
    return unique


def select_products(groups: Sequence[str], limit: int | None) -> set[str]:
    """`limit` products spread evenly over the sorted groups (all when limit is None)."""
    ordered = sorted(set(groups))
    if limit is None or limit >= len(ordered):
        return set(ordered)
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    return {ordered[index * len(ordered) // limit] for index in range(limit)}


def _harmonised_categories(drawings: Sequence[Drawing]) -> tuple[dict[str, str], int]:
    """One category per product, emoji-datasource's first; counts disagreeing products."""
    by_group = collections.defaultdict(dict)
    for drawing in drawings:
        by_group[drawing.group][drawing.vendor] = drawing.category
    categories, conflicts = {}, 0
    for group, vendor_categories in by_group.items():
        ordered = [vendor_categories[v] for v in VENDORS if v in vendor_categories]
        categories[group] = ordered[0]
        conflicts += len(set(ordered)) > 1
    return categories, conflicts


def _image_bytes(drawing: Drawing, source: _VendorSource) -> bytes:
    data = source.images[drawing.source_member]
    if drawing.vendor == "openmoji":
        return svg_render.png_bytes(svg_render.render_svg(data, OPENMOJI_PNG_SIZE))
    return data


def _write_listing(
    drawing: Drawing, source: _VendorSource, out_dir: pathlib.Path, log: ImportLog
) -> bool:
    if drawing.source_member not in source.images:
        log.skip(
            drawing.vendor, drawing.listing_id, f"{SKIPPED_MISSING_FILE}: {drawing.source_member}"
        )
        return False
    try:
        data = _image_bytes(drawing, source)
    except (ValueError, ElementTree.ParseError) as error:
        log.skip(drawing.vendor, drawing.listing_id, f"{SKIPPED_RENDER_FAILED}: {error}")
        return False
    image_file = out_dir / drawing.image_path
    image_file.parent.mkdir(parents=True, exist_ok=True)
    image_file.write_bytes(data)
    return True


def _summary(
    listings: Sequence[dict],
    sources: Mapping[str, _VendorSource],
    tarballs: Mapping[str, pathlib.Path],
    log: ImportLog,
    category_conflicts: int,
    options: Mapping,
) -> dict:
    vendors_by_group = collections.defaultdict(set)
    titles_by_group = collections.defaultdict(list)
    for listing in listings:
        vendor = listing["id"].split("-", 1)[0]
        vendors_by_group[listing["group"]].add(vendor)
        titles_by_group[listing["group"]].append(listing["title"].lower())
    categories = collections.Counter(listing["category"] for listing in listings)
    top_level = collections.Counter(
        category.split("/")[0] for category in (listing["category"] for listing in listings)
    )
    skipped_total = sum(sum(counts.values()) for counts in log.skipped.values())
    return {
        "listings": len(listings),
        "listings_per_vendor": dict(
            sorted(
                collections.Counter(listing["id"].split("-", 1)[0] for listing in listings).items()
            )
        ),
        "products": len(vendors_by_group),
        "products_with_2plus_vendors": sum(len(v) >= 2 for v in vendors_by_group.values()),
        "products_by_vendor_count": dict(
            sorted(collections.Counter(str(len(v)) for v in vendors_by_group.values()).items())
        ),
        "categories": len(categories),
        "top_level_categories": dict(sorted(top_level.items())),
        "category_conflicts_between_vendors": category_conflicts,
        "products_with_repeated_titles": sum(
            len(set(titles)) < len(titles) for titles in titles_by_group.values()
        ),
        "skipped_total": skipped_total,
        "skipped": {vendor: dict(counts) for vendor, counts in sorted(log.skipped.items())},
        "skipped_listings": log.skipped_listings,
        "excluded": {vendor: dict(counts) for vendor, counts in sorted(log.excluded.items())},
        "sources": {
            vendor: {
                "package": NPM_PACKAGES[vendor],
                "tarball": str(tarballs[vendor]),
                "image_folder": source.image_folder,
                "package_license": source.license,
            }
            for vendor, source in sources.items()
        },
        "options": dict(options),
    }


def import_emoji_catalog(
    out_dir,
    *,
    tarballs: Mapping[str, object] | None = None,
    vendors: Sequence[str] = VENDORS,
    include_skin_tones: bool = False,
    limit: int | None = None,
) -> pathlib.Path:
    """Writes OUT/manifest.jsonl, OUT/images/{vendor}/ and OUT/import_summary.json.

    Args:
      out_dir: output folder, created if needed.
      tarballs: vendor -> path of its npm tarball; None fetches them with `npm pack`
        into OUT/tarballs (tarballs already there are reused).
      vendors: which of "google", "twitter", "openmoji" to import.
      include_skin_tones: also import the skin-tone variants, each its own product.
      limit: at most this many products, spread evenly over the sorted emoji.

    Returns:
      The manifest's path.
    """
    started = time.perf_counter()
    out_dir = pathlib.Path(out_dir)
    vendors = check_vendors(vendors)
    if tarballs is None:
        tarballs = fetch_tarballs(out_dir / "tarballs", vendors)
    missing = [vendor for vendor in vendors if vendor not in tarballs]
    if missing:
        raise ValueError(f"no tarball given for {', '.join(missing)}")
    tarballs = {vendor: pathlib.Path(tarballs[vendor]) for vendor in vendors}
    log = ImportLog()
    sources = {}
    for vendor in vendors:
        logging.info("reading %s", tarballs[vendor])
        if vendor == "openmoji":
            sources[vendor] = _load_openmoji(tarballs[vendor], include_skin_tones, log)
        else:
            sources[vendor] = _load_datasource(vendor, tarballs[vendor], include_skin_tones, log)

    drawings = _unique_drawings(
        (drawing for source in sources.values() for drawing in source.drawings), log
    )
    chosen = select_products([drawing.group for drawing in drawings], limit)
    drawings = sorted(
        (d for d in drawings if d.group in chosen), key=lambda d: (d.group, VENDORS.index(d.vendor))
    )
    categories, category_conflicts = _harmonised_categories(drawings)

    listings = []
    for drawing in drawings:
        if _write_listing(drawing, sources[drawing.vendor], out_dir, log):
            listings.append(
                {
                    "id": drawing.listing_id,
                    "title": drawing.title,
                    "image": drawing.image_path,
                    "category": categories[drawing.group],
                    "group": drawing.group,
                    "seller": drawing.vendor,
                }
            )
    manifest = out_dir / MANIFEST_NAME
    manifest.write_text(
        "".join(json.dumps(listing, ensure_ascii=False) + "\n" for listing in listings),
        encoding="utf-8",
    )
    options = {"vendors": list(vendors), "include_skin_tones": include_skin_tones, "limit": limit}
    summary = _summary(listings, sources, tarballs, log, category_conflicts, options)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (out_dir / SUMMARY_NAME).write_text(
        json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return manifest
