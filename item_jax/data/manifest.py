"""Reads a catalog manifest (JSONL or CSV), validates each listing and cleans its text.

A manifest line is `{"id", "title", "image", "category"?, "group"?, "seller"?}`
(docs/design.md, "Data format"); a CSV has the same columns in a header row. `image` is a
path relative to the manifest (or an absolute path or URL), `""` for a listing without a
photo. The manifest and images may lie on any filesystem `file_io` reads (local, `gs://`,
...).

Every line becomes either a `Listing` or a `Reject` with a reason code; nothing is dropped
silently. Text is cleaned, and each cleaning counted per listing:
  * `invalid_utf8`: bytes that are not UTF-8 are read as Windows-1252 (Latin-1 where that
    has no character), the usual origin of such bytes, so "caf\\xe9" becomes "café".
  * `control_characters`: tabs and newlines become spaces, other control characters go.
Titles are also NFC-normalised and their whitespace collapsed (not counted). The
converter reports the counters over the listings it keeps.
The first line that carries an id claims it; later lines with that id are `duplicate_id`.
"""

import codecs
import csv
import dataclasses
import io
import json
import os
import unicodedata
from collections.abc import Iterator
from typing import Any

from item_jax import file_io

# Reject reasons found while reading the manifest.
MALFORMED_LINE = "malformed_line"
INVALID_FIELD = "invalid_field"
MISSING_ID = "missing_id"
DUPLICATE_ID = "duplicate_id"
EMPTY_TITLE = "empty_title"
EMPTY_LISTING = "empty_listing"
MANIFEST_REJECT_REASONS = (
    MALFORMED_LINE,
    INVALID_FIELD,
    MISSING_ID,
    DUPLICATE_ID,
    EMPTY_TITLE,
    EMPTY_LISTING,
)

# Cleaning counters.
CLEANED_INVALID_UTF8 = "invalid_utf8"
CLEANED_CONTROL_CHARACTERS = "control_characters"

TEXT_FIELDS = ("id", "title", "image", "category", "group", "seller")
CSV_EXTENSIONS = (".csv",)


@dataclasses.dataclass(frozen=True)
class Listing:
    """One valid manifest line; `image_path` is absolute, or "" when there is no photo."""

    line_number: int
    id: str
    title: str
    image_path: str
    category: str
    group: str
    cleanings: frozenset[str] = frozenset()  # Cleaning counters that applied to its text.
    # Who listed it (a seller, a shop, a vendor): training draws each listing's negatives
    # from its own seller's listings (`config.same_seller_negatives`); "" when not given.
    seller: str = ""


@dataclasses.dataclass(frozen=True)
class Reject:
    """A listing left out of the shards, and why."""

    line_number: int
    id: str | None
    reason: str
    detail: str

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "line": self.line_number,
            "id": self.id,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclasses.dataclass
class ManifestContents:
    """Everything read from a manifest: valid listings and rejects."""

    listings: list[Listing]
    rejects: list[Reject]
    num_input_listings: int


def read_manifest(manifest_path: str, allow_empty_titles: bool = False) -> ManifestContents:
    """Reads and validates every listing of a JSONL or CSV manifest."""
    listings, rejects = [], []
    seen_ids: dict[str, int] = {}
    num_input_listings = 0
    for claim in read_claims(manifest_path, allow_empty_titles):
        num_input_listings += 1
        if claim.id is not None and claim.id in seen_ids:
            rejects.append(duplicate_reject(claim, seen_ids[claim.id]))
            continue
        if claim.id is not None:
            seen_ids[claim.id] = claim.line_number
        (rejects if isinstance(claim.outcome, Reject) else listings).append(claim.outcome)
    return ManifestContents(listings, rejects, num_input_listings)


@dataclasses.dataclass(frozen=True)
class Claim:
    """One manifest line, judged on its own: what it becomes if it is the first with its id.

    `id` is None for a line rejected before it could claim an id (malformed, a non-string
    field, no id); such a line is never a duplicate. Resolving duplicates needs every line
    with the same id (`read_manifest` keeps a dict; the converter's pipeline groups by id).
    """

    line_number: int
    id: str | None
    outcome: "Listing | Reject"


def duplicate_reject(claim: Claim, first_line: int) -> Reject:
    return Reject(claim.line_number, claim.id, DUPLICATE_ID, f"id first seen on line {first_line}")


def manifest_files(manifest: str) -> list[str]:
    """The files a manifest argument names: one path, or a glob (`parts/manifest-*.jsonl`)
    whose files are, in sorted order, one manifest (their lines numbered on across files)."""
    if not any(char in manifest for char in "*?["):
        return [manifest]
    files = file_io.glob(manifest)
    if not files:
        raise FileNotFoundError(f"Manifest pattern {manifest!r} matches no file.")
    return files


def check_manifest(manifest: str) -> None:
    """Raises FileNotFoundError / ValueError for a manifest that cannot be read at all."""
    for manifest_path in manifest_files(manifest):
        if not file_io.isfile(manifest_path):
            raise FileNotFoundError(f"Manifest {manifest_path!r} does not exist.")
        if manifest_path.lower().endswith(CSV_EXTENSIONS):
            with file_io.open_file(manifest_path, "rb") as manifest_file:
                first_line = manifest_file.readline()
            if first_line.startswith(codecs.BOM_UTF8):
                first_line = first_line[len(codecs.BOM_UTF8) :]
            next(
                _csv_records(first_line.decode("utf-8", errors="surrogateescape"), manifest_path),
                None,
            )


def read_claims(manifest: str, allow_empty_titles: bool = False) -> Iterator[Claim]:
    """Every non-blank manifest line as a `Claim`, in file order (`manifest_files` order)."""
    first_line = 1
    for manifest_path in manifest_files(manifest):
        text = read_text(manifest_path)
        for claim in claims_of_text(text, manifest_path, allow_empty_titles):
            yield shift_claim(claim, first_line - 1)
        first_line += count_lines(text)


def read_text(manifest_path: str) -> str:
    """One manifest file's text, without a UTF-8 BOM; undecodable bytes surrogate-escaped."""
    if not file_io.isfile(manifest_path):
        raise FileNotFoundError(f"Manifest {manifest_path!r} does not exist.")
    raw_bytes = file_io.read_bytes(manifest_path)
    if raw_bytes.startswith(codecs.BOM_UTF8):
        raw_bytes = raw_bytes[len(codecs.BOM_UTF8) :]
    return raw_bytes.decode("utf-8", errors="surrogateescape")


def count_lines(text: str) -> int:
    """Physical lines of a file's text (a last line without "\n" counts)."""
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def claims_of_text(text: str, manifest_path: str, allow_empty_titles: bool) -> Iterator[Claim]:
    """The claims of one manifest file's text, numbered from its own first line."""
    if manifest_path.lower().endswith(CSV_EXTENSIONS):
        records = _csv_records(text, manifest_path)
    else:
        records = _jsonl_records(text)
    manifest_dir = os.path.dirname(file_io.absolute(manifest_path))
    for line_number, record in records:
        if isinstance(record, Reject):
            yield Claim(line_number, None, record)
        else:
            yield _claim_from_record(line_number, record, manifest_dir, allow_empty_titles)


def shift_claim(claim: Claim, lines_before: int) -> Claim:
    """The claim numbered as a line of the whole manifest, `lines_before` lines further on."""
    if not lines_before:
        return claim
    line_number = claim.line_number + lines_before
    return Claim(line_number, claim.id, dataclasses.replace(claim.outcome, line_number=line_number))


def _jsonl_records(text: str) -> Iterator[tuple[int, dict[str, Any] | Reject]]:
    """Yields (line number, parsed object or Reject) for every non-blank line."""
    # Split on "\n" only: str.splitlines would also split inside titles at \x1c, \x85, ...
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            # strict=False lets raw control characters through to clean_text.
            record = json.loads(line, strict=False)
        except json.JSONDecodeError as error:
            yield (
                line_number,
                Reject(
                    line_number,
                    None,
                    MALFORMED_LINE,
                    f"not valid JSON: {error.msg} at column {error.colno}",
                ),
            )
            continue
        if not isinstance(record, dict):
            yield (
                line_number,
                Reject(
                    line_number,
                    None,
                    MALFORMED_LINE,
                    f"expected a JSON object, got {type(record).__name__}",
                ),
            )
            continue
        yield line_number, record


def _csv_records(text: str, manifest_path: str) -> Iterator[tuple[int, dict[str, Any] | Reject]]:
    """Yields (first line number, row dict or Reject) for every non-blank CSV row."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    columns = [name.strip().lower() for name in header]
    if "id" not in columns:
        raise ValueError(
            f"CSV manifest {manifest_path!r} has no 'id' column; its header is "
            f"{header!r}. Expected columns: {', '.join(TEXT_FIELDS)}."
        )
    last_line = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield last_line + 1, Reject(last_line + 1, None, MALFORMED_LINE, f"CSV error: {error}")
            last_line = reader.line_num
            continue
        first_line, last_line = last_line + 1, reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(columns):
            yield (
                first_line,
                Reject(
                    first_line,
                    None,
                    MALFORMED_LINE,
                    f"{len(row)} fields, the header has {len(columns)}",
                ),
            )
            continue
        yield first_line, dict(zip(columns, row))


def _claim_from_record(
    line_number: int, record: dict[str, Any], manifest_dir: str, allow_empty_titles: bool
) -> Claim:
    fields = {}
    for name in TEXT_FIELDS:
        value = record.get(name)
        if value is None:
            value = ""
        elif name in ("id", "seller") and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            return Claim(
                line_number,
                None,
                Reject(
                    line_number,
                    _plain_id(record),
                    INVALID_FIELD,
                    f"field {name!r} must be a string, got {type(value).__name__}",
                ),
            )
        fields[name] = value

    cleanings = set()
    for name in ("id", "title", "category", "group", "seller"):
        fields[name], found = clean_text(fields[name])
        cleanings |= found

    listing_id = fields["id"]
    if not listing_id:
        return Claim(
            line_number, None, Reject(line_number, None, MISSING_ID, "the listing has no id")
        )
    image = fields["image"].strip()
    if not fields["title"]:
        if not image:
            return Claim(
                line_number,
                listing_id,
                Reject(line_number, listing_id, EMPTY_LISTING, "neither a title nor an image"),
            )
        if not allow_empty_titles:
            return Claim(
                line_number,
                listing_id,
                Reject(
                    line_number,
                    listing_id,
                    EMPTY_TITLE,
                    "the title is empty (allow image-only listings with --allow_empty_titles)",
                ),
            )
    if image and not file_io.is_remote(image):
        image = os.path.join(manifest_dir, image)
    image_path = image
    return Claim(
        line_number,
        listing_id,
        Listing(
            line_number,
            listing_id,
            fields["title"],
            image_path,
            fields["category"],
            fields["group"],
            frozenset(cleanings),
            fields["seller"],
        ),
    )


def _plain_id(record: dict[str, Any]) -> str | None:
    value = record.get("id")
    return value if isinstance(value, str) and value.strip() else None


def clean_text(text: str) -> tuple[str, set[str]]:
    """Repairs undecodable bytes, removes control characters, normalises whitespace.

    Returns the cleaned text and the set of cleaning counters that applied.
    """
    cleanings = set()
    repaired = _repair_undecodable_bytes(text)
    if repaired != text:
        cleanings.add(CLEANED_INVALID_UTF8)
    text = unicodedata.normalize("NFC", repaired)
    if any(unicodedata.category(char) == "Cc" for char in text):
        cleanings.add(CLEANED_CONTROL_CHARACTERS)
        text = "".join(
            char for char in text if char.isspace() or unicodedata.category(char) != "Cc"
        )
    return " ".join(text.split()), cleanings


def _repair_undecodable_bytes(text: str) -> str:
    """Maps surrogate-escaped bytes (and stray surrogates) to Windows-1252 / Latin-1."""
    if not any("\ud800" <= char <= "\udfff" for char in text):
        return text
    repaired = []
    for char in text:
        if "\udc80" <= char <= "\udcff":
            byte = bytes([ord(char) - 0xDC00])
            try:
                repaired.append(byte.decode("cp1252"))
            except UnicodeDecodeError:
                repaired.append(byte.decode("latin-1"))
        elif "\ud800" <= char <= "\udfff":
            repaired.append("\ufffd")
        else:
            repaired.append(char)
    return "".join(repaired)
