"""Emoji product set: the same emoji drawn by Google, Twitter and OpenMoji as listings.

Builds an ITEM_SPEC manifest from three npm packages:

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
  python -m item_jax.data.emoji_catalog --out DIR [--tarball_dir DIR] [--limit N]
"""

import argparse
import collections
import dataclasses
import io
import json
import logging
import math
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import time
from typing import Callable, Iterable, Mapping, Optional, Sequence
import xml.etree.ElementTree as ElementTree

import numpy as np
from PIL import Image
from PIL import ImageColor
from PIL import ImageDraw

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


def read_tarball_members(tarball: pathlib.Path,
                         wanted: Callable[[str], bool]) -> dict[str, bytes]:
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


def _load_json_member(members: Mapping[str, bytes], name: str,
                      tarball: pathlib.Path, package: str):
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
    raise ValueError(f"{source}: entry {record.get('unified') or record.get('hexcode')!r}"
                     f" has no {key!r} field")
  return record[key]


# ---------------------------------------------------------------------------
# emoji-datasource (Google and Twitter artwork).
# ---------------------------------------------------------------------------


def datasource_drawings(vendor: str, records: Sequence[Mapping], image_folder: str,
                        include_skin_tones: bool, log: ImportLog) -> list[Drawing]:
  """The drawings of one vendor listed in emoji-datasource's emoji.json."""
  title_for = google_title if vendor == "google" else twitter_title
  drawings = []
  for record in records:
    name = _required(record, "name", DATASOURCE_JSON)
    short_names = _required(record, "short_names", DATASOURCE_JSON)
    category = category_slug(_required(record, "category", DATASOURCE_JSON),
                             _required(record, "subcategory", DATASOURCE_JSON))
    variants = [("", record)]
    for tone_key, variation in sorted(record.get("skin_variations", {}).items()):
      if include_skin_tones:
        variants.append((tone_key, variation))
      else:
        log.exclude(vendor, EXCLUDED_SKIN_TONE)
    for tone_key, entry in variants:
      group = normalise_sequence(_required(entry, "unified", DATASOURCE_JSON))
      drawing = Drawing(vendor=vendor, group=group, category=category,
                        title=title_for(name, short_names, tone_key),
                        source_member=image_folder + _required(entry, "image", DATASOURCE_JSON))
      if entry.get(f"has_img_{vendor}", True):
        drawings.append(drawing)
      else:
        log.skip(vendor, drawing.listing_id, SKIPPED_NO_VENDOR_IMAGE)
  return drawings


# ---------------------------------------------------------------------------
# OpenMoji.
# ---------------------------------------------------------------------------


def openmoji_drawings(records: Sequence[Mapping], include_skin_tones: bool,
                      log: ImportLog) -> list[Drawing]:
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
    drawings.append(Drawing(
        vendor="openmoji", group=normalise_sequence(hexcode),
        category=category_slug(emoji_group, _required(record, "subgroups", OPENMOJI_JSON)),
        title=openmoji_title(_required(record, "annotation", OPENMOJI_JSON), tags),
        source_member=f"{OPENMOJI_SVG_DIR}{hexcode}.svg"))
  return drawings


# ---------------------------------------------------------------------------
# SVG rendering. OpenMoji's npm package ships SVG only; this renders the subset its
# artwork uses (path, circle, ellipse, rect, line, polyline, polygon, groups,
# transforms, solid fills and strokes) with Pillow, supersampled for anti-aliasing.
# Strokes always get round joins and caps, which is what OpenMoji draws with. Not
# drawn: dash patterns (solid instead), clip paths and markers, which OpenMoji 17.0.0
# uses in 14 dashed strokes and in two regional flags among its extras; a gradient or pattern paint
# without a fallback colour fails the drawing, which is then skipped and counted.
# ---------------------------------------------------------------------------

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PATH_TOKEN = re.compile(r"[MmZzLlHhVvCcSsQqTtAa]|" + _NUMBER)
_CURVE_STEPS = 12
_ARC_STEP_RADIANS = math.pi / 16
_ELLIPSE_STEPS = 64
_SUPERSAMPLE = 4
_SKIPPED_SVG_TAGS = frozenset((
    "defs", "clipPath", "mask", "linearGradient", "radialGradient", "pattern",
    "marker", "symbol", "style", "title", "desc", "metadata"))
_INHERITED_STYLE = ("fill", "stroke", "stroke-width", "fill-rule", "fill-opacity",
                    "stroke-opacity", "color", "paint-order")
_DEFAULT_STYLE = {"fill": "black", "stroke": "none", "stroke-width": "1",
                  "fill-rule": "nonzero", "fill-opacity": "1", "stroke-opacity": "1",
                  "color": "black", "paint-order": "normal", "opacity": 1.0}

Point = tuple[float, float]
Subpath = tuple[list[Point], bool]  # Points and whether the subpath is closed.
Matrix = tuple[float, float, float, float, float, float]  # SVG's (a, b, c, d, e, f).
_IDENTITY: Matrix = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)


class _PathTokens:
  """A cursor over the tokens of SVG path data."""

  def __init__(self, data: str):
    self.tokens = _PATH_TOKEN.findall(data)
    self.position = 0

  def done(self) -> bool:
    return self.position >= len(self.tokens)

  def at_command(self) -> bool:
    return self.tokens[self.position].isalpha()

  def command(self) -> str:
    self.position += 1
    return self.tokens[self.position - 1]

  def number(self) -> float:
    if self.done() or self.at_command():
      raise ValueError("path data ends in the middle of a command")
    self.position += 1
    return float(self.tokens[self.position - 1])

  def flag(self) -> bool:
    """Arc flags are single digits that may run into the next number: '011 20'."""
    if self.done() or self.at_command():
      raise ValueError("path data ends in the middle of an arc")
    token = self.tokens[self.position]
    if len(token) > 1:
      self.tokens[self.position] = token[1:]
    else:
      self.position += 1
    return token[0] == "1"


def _cubic_points(start: Point, control1: Point, control2: Point, end: Point) -> list[Point]:
  points = []
  for step in range(1, _CURVE_STEPS + 1):
    t = step / _CURVE_STEPS
    u = 1.0 - t
    points.append(tuple(u**3 * s + 3 * u * u * t * c1 + 3 * u * t * t * c2 + t**3 * e
                        for s, c1, c2, e in zip(start, control1, control2, end)))
  return points


def _quadratic_points(start: Point, control: Point, end: Point) -> list[Point]:
  points = []
  for step in range(1, _CURVE_STEPS + 1):
    t = step / _CURVE_STEPS
    u = 1.0 - t
    points.append(tuple(u * u * s + 2 * u * t * c + t * t * e
                        for s, c, e in zip(start, control, end)))
  return points


def _arc_points(start: Point, radii: Point, rotation_degrees: float, large_arc: bool,
                sweep: bool, end: Point) -> list[Point]:
  """An elliptical arc in SVG's endpoint form, flattened (SVG 1.1 appendix F.6.5)."""
  (x1, y1), (x2, y2) = start, end
  rx, ry = abs(radii[0]), abs(radii[1])
  if rx == 0 or ry == 0:
    return [end]
  if start == end:
    return []
  phi = math.radians(rotation_degrees)
  cos_phi, sin_phi = math.cos(phi), math.sin(phi)
  half_dx, half_dy = (x1 - x2) / 2, (y1 - y2) / 2
  x1p = cos_phi * half_dx + sin_phi * half_dy
  y1p = -sin_phi * half_dx + cos_phi * half_dy
  radii_scale = x1p**2 / rx**2 + y1p**2 / ry**2
  if radii_scale > 1:
    rx, ry = rx * math.sqrt(radii_scale), ry * math.sqrt(radii_scale)
  numerator = rx**2 * ry**2 - rx**2 * y1p**2 - ry**2 * x1p**2
  denominator = rx**2 * y1p**2 + ry**2 * x1p**2
  centre_scale = math.sqrt(max(0.0, numerator / denominator)) if denominator else 0.0
  if large_arc == sweep:
    centre_scale = -centre_scale
  cxp, cyp = centre_scale * rx * y1p / ry, -centre_scale * ry * x1p / rx
  cx = cos_phi * cxp - sin_phi * cyp + (x1 + x2) / 2
  cy = sin_phi * cxp + cos_phi * cyp + (y1 + y2) / 2
  theta_start = math.atan2((y1p - cyp) / ry, (x1p - cxp) / rx)
  theta_end = math.atan2((-y1p - cyp) / ry, (-x1p - cxp) / rx)
  sweep_angle = theta_end - theta_start
  if sweep and sweep_angle < 0:
    sweep_angle += 2 * math.pi
  elif not sweep and sweep_angle > 0:
    sweep_angle -= 2 * math.pi
  steps = max(2, math.ceil(abs(sweep_angle) / _ARC_STEP_RADIANS))
  points = []
  for step in range(1, steps):
    theta = theta_start + sweep_angle * step / steps
    points.append((cx + rx * math.cos(theta) * cos_phi - ry * math.sin(theta) * sin_phi,
                   cy + rx * math.cos(theta) * sin_phi + ry * math.sin(theta) * cos_phi))
  points.append(end)
  return points


def parse_path_data(data: str) -> list[Subpath]:
  """SVG path data -> flattened subpaths in user units."""
  tokens = _PathTokens(data)
  subpaths: list[Subpath] = []
  current: list[Point] = []
  position = subpath_start = (0.0, 0.0)
  command = previous = ""
  last_control: Optional[Point] = None

  def finish(closed: bool):
    if len(current) >= 2:
      subpaths.append((list(current), closed))
    current.clear()

  while not tokens.done():
    if tokens.at_command():
      command = tokens.command()
    elif not command or command in "Zz":
      raise ValueError(f"path data has numbers without a command: {data[:40]!r}")
    operation = command.upper()
    x, y = position
    offset_x, offset_y = (x, y) if command.islower() else (0.0, 0.0)

    def point() -> Point:
      return offset_x + tokens.number(), offset_y + tokens.number()

    if operation == "Z":
      finish(closed=True)
      position = subpath_start
      current.append(position)
      previous = operation
      continue
    if operation == "M":
      finish(closed=False)
      position = subpath_start = point()
      current.append(position)
      command = "l" if command.islower() else "L"
      previous = operation
      continue
    if not current:
      current.append(position)
    if operation == "L":
      position = point()
      current.append(position)
    elif operation == "H":
      position = (offset_x + tokens.number(), y)
      current.append(position)
    elif operation == "V":
      position = (x, offset_y + tokens.number())
      current.append(position)
    elif operation in "CS":
      if operation == "C":
        control1 = point()
      elif previous in "CS" and last_control:
        control1 = (2 * x - last_control[0], 2 * y - last_control[1])
      else:
        control1 = position
      last_control = point()
      end = point()
      current.extend(_cubic_points(position, control1, last_control, end))
      position = end
    elif operation in "QT":
      if operation == "Q":
        last_control = point()
      elif previous in "QT" and last_control:
        last_control = (2 * x - last_control[0], 2 * y - last_control[1])
      else:
        last_control = position
      end = point()
      current.extend(_quadratic_points(position, last_control, end))
      position = end
    elif operation == "A":
      radii = (tokens.number(), tokens.number())
      rotation = tokens.number()
      large_arc, sweep = tokens.flag(), tokens.flag()
      end = point()
      current.extend(_arc_points(position, radii, rotation, large_arc, sweep, end))
      position = end
    else:
      raise ValueError(f"unsupported path command {command!r}")
    previous = operation
  finish(closed=False)
  return subpaths


def parse_transform(text: str) -> Matrix:
  """An SVG transform list -> one affine matrix."""
  matrix = _IDENTITY
  for name, arguments in re.findall(r"(\w+)\s*\(([^)]*)\)", text or ""):
    matrix = _multiply(matrix, _transform_matrix(name, _numbers(arguments)))
  return matrix


def _transform_matrix(name: str, values: list[float]) -> Matrix:
  if name == "matrix" and len(values) == 6:
    return tuple(values)
  if name == "translate" and values:
    return (1.0, 0.0, 0.0, 1.0, values[0], values[1] if len(values) > 1 else 0.0)
  if name == "scale" and values:
    return (values[0], 0.0, 0.0, values[1] if len(values) > 1 else values[0], 0.0, 0.0)
  if name == "rotate" and values:
    angle = math.radians(values[0])
    rotation = (math.cos(angle), math.sin(angle), -math.sin(angle), math.cos(angle), 0.0, 0.0)
    if len(values) == 3:
      centre_x, centre_y = values[1], values[2]
      return _multiply(_multiply((1.0, 0.0, 0.0, 1.0, centre_x, centre_y), rotation),
                       (1.0, 0.0, 0.0, 1.0, -centre_x, -centre_y))
    return rotation
  if name == "skewX" and values:
    return (1.0, 0.0, math.tan(math.radians(values[0])), 1.0, 0.0, 0.0)
  if name == "skewY" and values:
    return (1.0, math.tan(math.radians(values[0])), 0.0, 1.0, 0.0, 0.0)
  raise ValueError(f"unsupported transform {name}({values})")


def _multiply(outer: Matrix, inner: Matrix) -> Matrix:
  """The matrix that applies `inner` first, then `outer`."""
  a1, b1, c1, d1, e1, f1 = outer
  a2, b2, c2, d2, e2, f2 = inner
  return (a1 * a2 + c1 * b2, b1 * a2 + d1 * b2, a1 * c2 + c1 * d2, b1 * c2 + d1 * d2,
          a1 * e2 + c1 * f2 + e1, b1 * e2 + d1 * f2 + f1)


def _apply(matrix: Matrix, points: Sequence[Point]) -> list[Point]:
  a, b, c, d, e, f = matrix
  return [(a * x + c * y + e, b * x + d * y + f) for x, y in points]


def _numbers(text: Optional[str]) -> list[float]:
  return [float(value) for value in re.findall(_NUMBER, text or "")]


def _first_number(text: Optional[str], default: float) -> float:
  values = _numbers(text)
  return values[0] if values else default


def _length(element: ElementTree.Element, name: str) -> float:
  return _first_number(element.get(name), 0.0)


def _ellipse_subpath(cx: float, cy: float, rx: float, ry: float) -> list[Subpath]:
  if rx <= 0 or ry <= 0:
    return []
  points = [(cx + rx * math.cos(2 * math.pi * step / _ELLIPSE_STEPS),
             cy + ry * math.sin(2 * math.pi * step / _ELLIPSE_STEPS))
            for step in range(_ELLIPSE_STEPS)]
  return [(points, True)]


def _rect_subpaths(element: ElementTree.Element) -> list[Subpath]:
  x, y = _length(element, "x"), _length(element, "y")
  width, height = _length(element, "width"), _length(element, "height")
  if width <= 0 or height <= 0:
    return []
  rx = _length(element, "rx") if element.get("rx") else _length(element, "ry")
  ry = _length(element, "ry") if element.get("ry") else rx
  rx, ry = min(rx, width / 2), min(ry, height / 2)
  if rx <= 0 or ry <= 0:
    return [([(x, y), (x + width, y), (x + width, y + height), (x, y + height)], True)]
  return parse_path_data(
      f"M{x + rx},{y} H{x + width - rx} A{rx},{ry} 0 0 1 {x + width},{y + ry}"
      f" V{y + height - ry} A{rx},{ry} 0 0 1 {x + width - rx},{y + height}"
      f" H{x + rx} A{rx},{ry} 0 0 1 {x},{y + height - ry}"
      f" V{y + ry} A{rx},{ry} 0 0 1 {x + rx},{y} Z")


def _shape_subpaths(tag: str, element: ElementTree.Element) -> list[Subpath]:
  """The outline of one drawing element in its own user units."""
  if tag == "path":
    return parse_path_data(element.get("d", ""))
  if tag == "circle":
    radius = _length(element, "r")
    return _ellipse_subpath(_length(element, "cx"), _length(element, "cy"), radius, radius)
  if tag == "ellipse":
    return _ellipse_subpath(_length(element, "cx"), _length(element, "cy"),
                            _length(element, "rx"), _length(element, "ry"))
  if tag == "rect":
    return _rect_subpaths(element)
  if tag == "line":
    return [([(_length(element, "x1"), _length(element, "y1")),
              (_length(element, "x2"), _length(element, "y2"))], False)]
  if tag in ("polyline", "polygon"):
    values = _numbers(element.get("points"))
    points = list(zip(values[0::2], values[1::2]))
    return [(points, tag == "polygon")] if len(points) >= 2 else []
  return []


def _element_style(element: ElementTree.Element, parent_style: Mapping) -> dict:
  style = {key: parent_style[key] for key in _INHERITED_STYLE}
  declared = dict(element.attrib)
  for declaration in element.get("style", "").split(";"):
    if ":" in declaration:
      key, value = declaration.split(":", 1)
      declared[key.strip()] = value.strip()
  style.update({key: declared[key] for key in _INHERITED_STYLE if key in declared})
  style["opacity"] = parent_style["opacity"] * _first_number(declared.get("opacity"), 1.0)
  style["display"] = declared.get("display", "inline")
  return style


def _paint_rgb(paint: str, style: Mapping) -> Optional[tuple[int, int, int]]:
  paint = paint.strip()
  if paint == "none":
    return None
  if paint == "currentColor":
    paint = style["color"]
  if paint.startswith("url("):
    fallback = paint.split(")", 1)[1].strip()
    if not fallback:
      raise ValueError(f"unsupported SVG paint server {paint!r} (gradients are not drawn)")
    return _paint_rgb(fallback, style)
  try:
    return ImageColor.getrgb(paint)[:3]
  except ValueError as error:
    raise ValueError(f"unsupported SVG paint {paint!r}") from error


def _polygon_mask(size: int, points: Sequence[Point]) -> np.ndarray:
  mask = Image.new("L", (size, size), 0)
  ImageDraw.Draw(mask).polygon(points, fill=255)
  return np.asarray(mask) > 0


def _signed_area(points: Sequence[Point]) -> float:
  return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]))


def _fill_mask(size: int, subpaths: Sequence[Subpath], even_odd: bool) -> Image.Image:
  """Fills every subpath as closed, by the non-zero or the even-odd rule."""
  polygons = [points for points, _ in subpaths if len(points) >= 3]
  winding = np.zeros((size, size), np.int32)
  for points in polygons:
    inside = _polygon_mask(size, points)
    if even_odd:
      winding ^= inside
    else:
      winding += np.where(inside, 1 if _signed_area(points) >= 0 else -1, 0)
  return Image.fromarray(np.where(winding != 0, 255, 0).astype(np.uint8), "L")


def _stroke_mask(size: int, subpaths: Sequence[Subpath], width: float) -> Image.Image:
  mask = Image.new("L", (size, size), 0)
  draw = ImageDraw.Draw(mask)
  radius = width / 2
  for points, closed in subpaths:
    line = points + points[:1] if closed else points
    draw.line(line, fill=255, width=max(1, round(width)))
    for x, y in line:
      draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
  return mask


def _composite(canvas: Image.Image, mask: Image.Image, rgb: tuple[int, int, int],
               alpha: float) -> None:
  box = mask.getbbox()
  if box is None or alpha <= 0:
    return
  region = mask.crop(box)
  if alpha < 1:
    region = region.point(lambda value: round(value * alpha))
  layer = Image.new("RGBA", region.size, rgb + (0,))
  layer.putalpha(region)
  canvas.alpha_composite(layer, dest=box[:2])


def _paint_shape(canvas: Image.Image, subpaths: list[Subpath], matrix: Matrix,
                 style: Mapping) -> None:
  device_subpaths = [(_apply(matrix, points), closed) for points, closed in subpaths]
  scale = math.sqrt(abs(matrix[0] * matrix[3] - matrix[1] * matrix[2]))
  operations = ["fill", "stroke"]
  if style["paint-order"].strip().startswith("stroke"):
    operations.reverse()
  for operation in operations:
    rgb = _paint_rgb(style[operation], style)
    if rgb is None:
      continue
    opacity = style["opacity"] * _first_number(style[f"{operation}-opacity"], 1.0)
    if operation == "fill":
      mask = _fill_mask(canvas.width, device_subpaths, style["fill-rule"] == "evenodd")
    else:
      width = _first_number(style["stroke-width"], 1.0) * scale
      if width <= 0:
        continue
      mask = _stroke_mask(canvas.width, device_subpaths, width)
    _composite(canvas, mask, rgb, opacity)


def _draw_element(canvas: Image.Image, element: ElementTree.Element, matrix: Matrix,
                  parent_style: Mapping) -> None:
  tag = element.tag.rsplit("}", 1)[-1]
  if tag in _SKIPPED_SVG_TAGS:
    return
  style = _element_style(element, parent_style)
  if style["display"] == "none":
    return
  matrix = _multiply(matrix, parse_transform(element.get("transform", "")))
  subpaths = _shape_subpaths(tag, element)
  if subpaths:
    _paint_shape(canvas, subpaths, matrix, style)
  for child in element:
    _draw_element(canvas, child, matrix, style)


def render_svg(svg: bytes, size: int = OPENMOJI_PNG_SIZE) -> Image.Image:
  """Renders an SVG document to a `size` x `size` RGBA image."""
  root = ElementTree.fromstring(svg)
  view_box = _numbers(root.get("viewBox"))
  if len(view_box) != 4:
    view_box = [0.0, 0.0, _length(root, "width"), _length(root, "height")]
  min_x, min_y, box_width, box_height = view_box
  if box_width <= 0 or box_height <= 0:
    raise ValueError("SVG has neither a viewBox nor a width and height")
  canvas_size = size * _SUPERSAMPLE
  scale = canvas_size / max(box_width, box_height)
  canvas = Image.new("RGBA", (canvas_size, canvas_size), (0, 0, 0, 0))
  _draw_element(canvas, root, (scale, 0.0, 0.0, scale, -min_x * scale, -min_y * scale),
                _DEFAULT_STYLE)
  return canvas.resize((size, size), Image.Resampling.BOX)


def _png_bytes(image: Image.Image) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format="PNG", optimize=True)
  return buffer.getvalue()


# ---------------------------------------------------------------------------
# Fetching the packages.
# ---------------------------------------------------------------------------


def fetch_tarballs(dest_dir, vendors: Sequence[str] = VENDORS) -> dict[str, pathlib.Path]:
  """Fetches the pinned npm packages with `npm pack` into `dest_dir`; reuses existing ones."""
  dest_dir = pathlib.Path(dest_dir)
  dest_dir.mkdir(parents=True, exist_ok=True)
  tarballs = {}
  for vendor in _check_vendors(vendors):
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
        f"or run `npm pack {package}` elsewhere and pass the folder with --tarball_dir.")
  logging.info("fetching %s with npm pack", package)
  result = subprocess.run([npm, "pack", package, "--pack-destination", str(dest_dir)],
                          capture_output=True, text=True, check=False)
  if result.returncode != 0:
    raise RuntimeError(f"`npm pack {package}` failed (exit {result.returncode}):\n"
                       f"{result.stderr.strip()[-2000:]}")


def find_tarballs(tarball_dir, vendors: Sequence[str] = VENDORS) -> dict[str, pathlib.Path]:
  """The pinned tarballs in `tarball_dir`, by their `npm pack` file names."""
  tarball_dir = pathlib.Path(tarball_dir)
  tarballs = {vendor: tarball_dir / TARBALL_NAMES[vendor] for vendor in _check_vendors(vendors)}
  missing = [vendor for vendor, path in tarballs.items() if not path.is_file()]
  if missing:
    raise FileNotFoundError(
        f"{tarball_dir} lacks {', '.join(TARBALL_NAMES[v] for v in missing)}; fetch them "
        f"with `npm pack {' '.join(NPM_PACKAGES[v] for v in missing)}`")
  return tarballs


def _check_vendors(vendors: Sequence[str]) -> tuple[str, ...]:
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


def _load_datasource(vendor: str, tarball: pathlib.Path, include_skin_tones: bool,
                     log: ImportLog) -> _VendorSource:
  prefix = f"package/img/{vendor}/"
  members = read_tarball_members(
      tarball, lambda name: name in (DATASOURCE_JSON, PACKAGE_JSON) or
      (name.startswith(prefix) and name.endswith(".png") and "/sheet" not in name))
  records = _load_json_member(members, DATASOURCE_JSON, tarball, NPM_PACKAGES[vendor])
  image_folder = _choose_png_folder(_png_folders(members, vendor), tarball)
  drawings = datasource_drawings(vendor, records, image_folder, include_skin_tones, log)
  return _VendorSource(drawings, members, image_folder, _package_license(members))


def _load_openmoji(tarball: pathlib.Path, include_skin_tones: bool,
                   log: ImportLog) -> _VendorSource:
  members = read_tarball_members(
      tarball, lambda name: name in (OPENMOJI_JSON, PACKAGE_JSON) or
      (name.startswith(OPENMOJI_SVG_DIR) and name.endswith(".svg")))
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


def select_products(groups: Sequence[str], limit: Optional[int]) -> set[str]:
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
    return _png_bytes(render_svg(data))
  return data


def _write_listing(drawing: Drawing, source: _VendorSource, out_dir: pathlib.Path,
                   log: ImportLog) -> bool:
  if drawing.source_member not in source.images:
    log.skip(drawing.vendor, drawing.listing_id,
             f"{SKIPPED_MISSING_FILE}: {drawing.source_member}")
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


def _summary(listings: Sequence[dict], sources: Mapping[str, _VendorSource],
             tarballs: Mapping[str, pathlib.Path], log: ImportLog,
             category_conflicts: int, options: Mapping) -> dict:
  vendors_by_group = collections.defaultdict(set)
  titles_by_group = collections.defaultdict(list)
  for listing in listings:
    vendor = listing["id"].split("-", 1)[0]
    vendors_by_group[listing["group"]].add(vendor)
    titles_by_group[listing["group"]].append(listing["title"].lower())
  categories = collections.Counter(listing["category"] for listing in listings)
  top_level = collections.Counter(category.split("/")[0] for category in
                                  (listing["category"] for listing in listings))
  skipped_total = sum(sum(counts.values()) for counts in log.skipped.values())
  return {
      "listings": len(listings),
      "listings_per_vendor": dict(sorted(collections.Counter(
          listing["id"].split("-", 1)[0] for listing in listings).items())),
      "products": len(vendors_by_group),
      "products_with_2plus_vendors": sum(len(v) >= 2 for v in vendors_by_group.values()),
      "products_by_vendor_count": dict(sorted(collections.Counter(
          str(len(v)) for v in vendors_by_group.values()).items())),
      "categories": len(categories),
      "top_level_categories": dict(sorted(top_level.items())),
      "category_conflicts_between_vendors": category_conflicts,
      "products_with_repeated_titles": sum(
          len(set(titles)) < len(titles) for titles in titles_by_group.values()),
      "skipped_total": skipped_total,
      "skipped": {vendor: dict(counts) for vendor, counts in sorted(log.skipped.items())},
      "skipped_listings": log.skipped_listings,
      "excluded": {vendor: dict(counts) for vendor, counts in sorted(log.excluded.items())},
      "sources": {vendor: {"package": NPM_PACKAGES[vendor],
                           "tarball": str(tarballs[vendor]),
                           "image_folder": source.image_folder,
                           "package_license": source.license}
                  for vendor, source in sources.items()},
      "options": dict(options),
  }


def import_emoji_catalog(out_dir, *, tarballs: Optional[Mapping[str, object]] = None,
                         vendors: Sequence[str] = VENDORS, include_skin_tones: bool = False,
                         limit: Optional[int] = None) -> pathlib.Path:
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
  vendors = _check_vendors(vendors)
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
      (drawing for source in sources.values() for drawing in source.drawings), log)
  chosen = select_products([drawing.group for drawing in drawings], limit)
  drawings = sorted((d for d in drawings if d.group in chosen),
                    key=lambda d: (d.group, VENDORS.index(d.vendor)))
  categories, category_conflicts = _harmonised_categories(drawings)

  listings = []
  for drawing in drawings:
    if _write_listing(drawing, sources[drawing.vendor], out_dir, log):
      listings.append({"id": drawing.listing_id, "title": drawing.title,
                       "image": drawing.image_path, "category": categories[drawing.group],
                       "group": drawing.group})
  manifest = out_dir / MANIFEST_NAME
  manifest.write_text("".join(json.dumps(listing, ensure_ascii=False) + "\n"
                              for listing in listings), encoding="utf-8")
  options = {"vendors": list(vendors), "include_skin_tones": include_skin_tones,
             "limit": limit}
  summary = _summary(listings, sources, tarballs, log, category_conflicts, options)
  summary["seconds"] = round(time.perf_counter() - started, 1)
  (out_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
  return manifest


# ---------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m item_jax.data.emoji_catalog",
      description="Builds the emoji product set manifest from the npm emoji packages.")
  parser.add_argument("--out", required=True, help="output folder")
  parser.add_argument("--tarball_dir", help="folder holding the `npm pack` tarballs; "
                      "without it they are fetched into OUT/tarballs")
  for vendor in VENDORS:
    parser.add_argument(f"--{vendor}_tarball", help=f"path of {NPM_PACKAGES[vendor]}")
  parser.add_argument("--vendors", default=",".join(VENDORS),
                      help="comma-separated subset of " + ",".join(VENDORS))
  parser.add_argument("--include_skin_tones", action="store_true",
                      help="also import skin-tone variants")
  parser.add_argument("--limit", type=int, help="at most this many products")
  return parser.parse_args(argv)


def _tarballs_from_args(args: argparse.Namespace,
                        vendors: Sequence[str]) -> dict[str, pathlib.Path]:
  """Explicit paths first, then --tarball_dir, else `npm pack` into OUT/tarballs."""
  explicit = {vendor: pathlib.Path(getattr(args, f"{vendor}_tarball")) for vendor in vendors
              if getattr(args, f"{vendor}_tarball")}
  remaining = [vendor for vendor in vendors if vendor not in explicit]
  if not remaining:
    return explicit
  if args.tarball_dir:
    found = find_tarballs(args.tarball_dir, remaining)
  else:
    found = fetch_tarballs(pathlib.Path(args.out) / "tarballs", remaining)
  return {**found, **explicit}


def main(argv: Optional[Sequence[str]] = None) -> int:
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
  args = _parse_args(sys.argv[1:] if argv is None else argv)
  vendors = [vendor.strip() for vendor in args.vendors.split(",") if vendor.strip()]
  manifest = import_emoji_catalog(
      args.out, tarballs=_tarballs_from_args(args, _check_vendors(vendors)), vendors=vendors,
      include_skin_tones=args.include_skin_tones, limit=args.limit)
  summary = json.loads((manifest.parent / SUMMARY_NAME).read_text(encoding="utf-8"))
  print(f"wrote {manifest}: {summary['listings']} listings "
        f"{summary['listings_per_vendor']}, {summary['products']} products "
        f"({summary['products_with_2plus_vendors']} drawn by 2+ vendors), "
        f"{summary['categories']} categories, {summary['skipped_total']} skipped "
        f"{summary['skipped']}, {summary['seconds']} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
