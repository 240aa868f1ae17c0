"""The embedded default catalog: deterministic procedural product listings, no download.

Each product is a leaf category (drawn with its own silhouette) plus five attributes:
colour and pattern are visible ONLY in the photo, brand, material and size appear ONLY in
the title. Products come in blocks of two title variants x two visual variants of one
category, so the catalog holds many pairs that share every title attribute but look
different, and many pairs that look alike but differ in the title. An embedding must read
both modalities to tell such products apart.

Every listing of a product shares its `group`; listings differ in viewpoint (rotation,
scale, offset), background, lighting and title wording (word order, synonyms, fillers,
abbreviations). The same arguments write byte-identical files.

Writes `OUT/manifest.jsonl` (a manifest as in docs/design.md, "Data format"),
`OUT/images/*.png` and `OUT/products.jsonl` (the ground-truth attributes of each product group).

  python -m item_jax.cli.build_synthetic_catalog --out runs/demo/catalog \
      [--num_products 300 --listings_per_product 4 --image_size 96 --seed 0]
"""

import collections
import dataclasses
import json
import math
import pathlib
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

TEXT_ONLY_ATTRIBUTES = ("brand", "material", "size")
IMAGE_ONLY_ATTRIBUTES = ("colour", "pattern")
SHARED_ATTRIBUTES = ("category",)

# ----------------------------------------------------------------------------------------
# Attribute vocabularies.
# ----------------------------------------------------------------------------------------

# Colour name -> RGB of the product body.
COLOURS = {
    "red": (205, 35, 45),
    "orange": (240, 135, 25),
    "yellow": (240, 205, 40),
    "green": (45, 150, 60),
    "teal": (20, 145, 150),
    "blue": (40, 80, 205),
    "purple": (125, 50, 165),
    "pink": (240, 125, 175),
    "brown": (120, 75, 40),
    "black": (35, 35, 38),
}

PATTERNS = ("plain", "stripes", "dots", "checks", "zigzag")

# Words that would leak an image-only attribute into a title; titles never contain them.
IMAGE_ONLY_WORDS = frozenset(
    list(COLOURS)
    + list(PATTERNS)
    + [
        "striped",
        "stripe",
        "dot",
        "dotted",
        "polka",
        "check",
        "checked",
        "checkered",
        "plaid",
        "chevron",
        "zig",
        "zag",
        "solid",
        "colour",
        "color",
        "grey",
        "gray",
        "white",
        "navy",
    ]
)

BRANDS = (
    "Acorn Lane",
    "Brightwell",
    "Corvida",
    "Dunmore",
    "Elkwood",
    "Fenwick",
    "Glenholt",
    "Harbor & Oak",
    "Ivywick",
    "Kestrel",
    "Marlow",
    "Northwind",
)

# Canonical material -> the ways a title may write it.
MATERIAL_ALIASES = {
    "ceramic": ("ceramic", "Ceramic"),
    "stoneware": ("stoneware", "Stoneware"),
    "porcelain": ("porcelain", "Porcelain", "fine porcelain"),
    "enamel": ("enamel", "enamelware"),
    "melamine": ("melamine", "Melamine"),
    "bamboo": ("bamboo", "Bamboo"),
    "cork": ("cork", "natural cork"),
    "silicone": ("silicone", "Silicone"),
    "slate": ("slate", "Slate stone"),
    "cotton": ("cotton", "100% cotton", "Cotton"),
    "linen": ("linen", "Linen"),
    "velvet": ("velvet", "Velvet"),
    "polyester": ("polyester", "poly", "Polyester"),
    "metal": ("metal", "Metal"),
    "glass": ("glass", "Glass"),
    "wood": ("wood", "wooden", "Wood"),
    "canvas": ("canvas", "Canvas"),
    "jute": ("jute", "Jute"),
    "leather": ("leather", "genuine leather", "Leather"),
    "nylon": ("nylon", "Nylon"),
    "wool": ("wool", "Wool"),
    "twill": ("twill", "cotton twill"),
    "pongee": ("pongee", "Pongee"),
    "rubber": ("rubber", "Rubber"),
    "vinyl": ("vinyl", "Vinyl"),
    "ripstop": ("ripstop", "ripstop nylon"),
    "plastic": ("plastic", "Plastic"),
    "foam": ("foam", "EVA foam"),
    "fleece": ("fleece", "Fleece"),
    "velour": ("velour", "Velour"),
    "stainless steel": ("stainless steel", "stainless", "SS"),
    "aluminium": ("aluminium", "aluminum", "alu"),
    "cast iron": ("cast iron", "cast-iron"),
    "neoprene": ("neoprene", "Neoprene"),
    "pvc": ("PVC", "pvc"),
}

# Size families: canonical size -> the ways a title may write it.
LETTER_SIZES = {
    "small": ("small", "sm", "S"),
    "medium": ("medium", "med", "M"),
    "large": ("large", "lg", "L"),
}


def _inch_sizes(*inches: int) -> dict[str, tuple[str, ...]]:
    return {f"{n} inch": (f"{n} inch", f"{n}in", f'{n}"') for n in inches}


def _set_sizes(*counts: int) -> dict[str, tuple[str, ...]]:
    return {f"set of {n}": (f"set of {n}", f"{n} pcs", f"{n}-pack") for n in counts}


SIZE_FAMILIES = {
    "mug": {f"{n} oz": (f"{n} oz", f"{n}oz", f"{n} ounce") for n in (8, 12, 16)},
    "inch_small": _inch_sizes(6, 8, 10),
    "inch_large": _inch_sizes(38, 46, 54),
    "inch_kite": _inch_sizes(30, 40, 50),
    "set_small": _set_sizes(4, 6, 8),
    "set_large": _set_sizes(12, 24, 48),
    "square": {f"{n}x{n}": (f"{n}x{n}", f'{n}"x{n}"', f"{n} x {n} in") for n in (16, 18, 20)},
    "letter": LETTER_SIZES,
    "shirt": {
        "small": ("size S", "Sz S", "small"),
        "medium": ("size M", "Sz M", "medium"),
        "large": ("size L", "Sz L", "large"),
        "xl": ("size XL", "Sz XL", "XL"),
    },
    "litre": {f"{n}L": (f"{n}L", f"{n} L", f"{n} litre") for n in (15, 20, 30)},
    "mm": {f"{n}mm": (f"{n}mm", f"{n} mm") for n in (32, 45, 60)},
    "ml": {
        "500 ml": ("500 ml", "500ml", "0.5L"),
        "750 ml": ("750 ml", "750ml", "0.75L"),
        "1 l": ("1L", "1 litre", "1000ml"),
    },
    "pound": {f"{n} lb": (f"{n} lb", f"{n}lb", f"{n} pound") for n in (2, 5, 10)},
}


@dataclasses.dataclass(frozen=True)
class CategorySpec:
    """A leaf category: its path, silhouette, title nouns, materials and size family."""

    path: str
    shape: str
    nouns: tuple[str, ...]
    materials: tuple[str, ...]
    size_family: str


# Ordered so that consecutive leaves rotate through departments: a small catalog that
# fills categories in order still spans every department.
CATEGORIES = (
    CategorySpec(
        "home/kitchen/mugs",
        "mug",
        ("mug", "coffee mug", "coffee cup", "tea mug"),
        ("ceramic", "stoneware", "porcelain", "enamel"),
        "mug",
    ),
    CategorySpec(
        "fashion/bags/totes",
        "tote",
        ("tote bag", "tote", "shopping bag", "shoulder tote"),
        ("canvas", "cotton", "jute", "leather"),
        "letter",
    ),
    CategorySpec(
        "toys/balls/bouncy_balls",
        "circle",
        ("bouncy ball", "rubber ball", "play ball", "bounce ball"),
        ("rubber", "silicone", "vinyl"),
        "mm",
    ),
    CategorySpec(
        "sports/hydration/water_bottles",
        "bottle",
        ("water bottle", "sports bottle", "drink bottle", "hydration bottle"),
        ("stainless steel", "plastic", "glass", "aluminium"),
        "ml",
    ),
    CategorySpec(
        "home/kitchen/plates",
        "plate",
        ("plate", "dinner plate", "serving plate", "dinnerware plate"),
        ("ceramic", "porcelain", "melamine", "bamboo"),
        "inch_small",
    ),
    CategorySpec(
        "fashion/bags/backpacks",
        "backpack",
        ("backpack", "rucksack", "daypack", "school backpack"),
        ("nylon", "canvas", "leather", "polyester"),
        "litre",
    ),
    CategorySpec(
        "toys/outdoor/kites",
        "kite",
        ("kite", "diamond kite", "beach kite", "flying kite"),
        ("nylon", "ripstop", "polyester"),
        "inch_kite",
    ),
    CategorySpec(
        "sports/fitness/dumbbells",
        "dumbbell",
        ("dumbbell", "hand weight", "dumbbell weight", "gym weight"),
        ("cast iron", "neoprene", "vinyl", "rubber"),
        "pound",
    ),
    CategorySpec(
        "home/kitchen/coasters",
        "hexagon",
        ("coaster", "drink coaster", "cup coaster", "hex coaster"),
        ("cork", "silicone", "slate", "bamboo"),
        "set_small",
    ),
    CategorySpec(
        "fashion/tops/tshirts",
        "tshirt",
        ("t-shirt", "tee", "crew neck tee", "tshirt"),
        ("cotton", "linen", "polyester", "bamboo"),
        "shirt",
    ),
    CategorySpec(
        "toys/blocks/building_blocks",
        "triangle",
        ("building block", "toy block", "stacking block", "triangle block"),
        ("wood", "plastic", "foam"),
        "set_large",
    ),
    CategorySpec(
        "sports/swim/swim_rings",
        "ring",
        ("swim ring", "pool float", "swim tube", "inflatable ring"),
        ("vinyl", "pvc", "rubber"),
        "letter",
    ),
    CategorySpec(
        "home/decor/cushions",
        "rounded_square",
        ("cushion", "throw pillow", "pillow cover", "sofa cushion"),
        ("cotton", "linen", "velvet", "polyester"),
        "square",
    ),
    CategorySpec(
        "fashion/accessories/caps",
        "cap",
        ("baseball cap", "cap", "ball cap", "sports hat"),
        ("cotton", "wool", "twill", "polyester"),
        "letter",
    ),
    CategorySpec(
        "toys/plush/star_plush",
        "star",
        ("star plush", "star pillow", "plush star", "star soft toy"),
        ("fleece", "velour", "cotton"),
        "inch_small",
    ),
    CategorySpec(
        "home/lighting/lamps",
        "lamp",
        ("table lamp", "desk lamp", "bedside lamp", "lamp"),
        ("ceramic", "glass", "metal", "wood"),
        "letter",
    ),
    CategorySpec(
        "fashion/accessories/umbrellas",
        "umbrella",
        ("umbrella", "rain umbrella", "compact umbrella", "brolly"),
        ("nylon", "polyester", "pongee"),
        "inch_large",
    ),
    CategorySpec(
        "toys/plush/heart_plush",
        "heart",
        ("heart plush", "heart pillow", "plush heart", "heart soft toy"),
        ("fleece", "velour", "cotton"),
        "inch_small",
    ),
)

TITLE_TEMPLATES = (
    "{brand} {material} {noun} {size}",
    "{brand} {noun} {material} {size}",
    "{noun} {brand} {size} {material}",
    "{size} {material} {noun} by {brand}",
    "{brand} {noun}, {material}, {size}",
    "{material} {noun} - {brand} - {size}",
    "{brand} {size} {material} {noun}",
    "{noun} ({material}, {size}) {brand}",
)
TITLE_PREFIXES = ("", "", "", "New", "NEW", "Brand New", "NWT", "Hot Sale", "Genuine")
TITLE_SUFFIXES = (
    "",
    "",
    "",
    "free shipping",
    "Free Shipping!",
    "fast ship",
    "great gift",
    "US seller",
    "- gift idea",
    "ships fast",
    "authentic",
)

# ----------------------------------------------------------------------------------------
# Products.
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Product:
    """One product group and its ground-truth attributes."""

    group: str
    category: str
    shape: str
    brand: str
    material: str
    size: str
    colour: str
    pattern: str

    def title_attributes(self) -> tuple[str, str, str, str]:
        return (self.category, self.brand, self.material, self.size)

    def visual_attributes(self) -> tuple[str, str, str]:
        return (self.category, self.colour, self.pattern)


def describe_attributes() -> dict[str, tuple[str, ...]]:
    """Which product attributes each modality carries (`products.jsonl` uses these keys)."""
    return {
        "text_only": TEXT_ONLY_ATTRIBUTES,
        "image_only": IMAGE_ONLY_ATTRIBUTES,
        "shared": SHARED_ATTRIBUTES,
    }


def category_tree() -> dict:
    """The catalog's categories as nested dicts: department -> ... -> leaf -> {}."""
    tree: dict = {}
    for spec in CATEGORIES:
        node = tree
        for part in spec.path.split("/"):
            node = node.setdefault(part, {})
    return tree


def _category_by_path() -> dict[str, CategorySpec]:
    return {spec.path: spec for spec in CATEGORIES}


def _draw_distinct(rng: np.random.Generator, candidates: Sequence, count: int) -> list:
    indices = rng.choice(len(candidates), size=count, replace=False)
    return [candidates[i] for i in sorted(indices)]


def _product_block(
    spec: CategorySpec, rng: np.random.Generator, num_title_variants: int, num_visual_variants: int
) -> list[tuple]:
    """A block of one category: every title tuple crossed with every visual tuple."""
    sizes = list(SIZE_FAMILIES[spec.size_family])
    title_tuples = [(spec.path, b, m, s) for b in BRANDS for m in spec.materials for s in sizes]
    visual_tuples = [(c, p) for c in COLOURS for p in PATTERNS]
    chosen_titles = _draw_distinct(rng, title_tuples, num_title_variants)
    chosen_visuals = _draw_distinct(rng, visual_tuples, num_visual_variants)
    return [t + v for t in chosen_titles for v in chosen_visuals]


def build_products(num_products: int, seed: int) -> list[Product]:
    """Products in blocks of 2 title x 2 visual variants, categories taken in turn.

    Every full block makes each of its title tuples appear with two looks and each look
    with two title tuples. When `num_products` is not a multiple of 4 the last block is
    partial: with 2 left it keeps one title tuple with two looks.
    """
    rng = np.random.default_rng([seed, 0])
    products: list[tuple] = []
    seen: set[tuple] = set()
    block_index = 0
    collisions = 0
    while len(products) < num_products:
        spec = CATEGORIES[block_index % len(CATEGORIES)]
        remaining = num_products - len(products)
        num_titles = 1 if remaining <= 2 else 2
        block = _product_block(spec, rng, num_titles, 2)[:remaining]
        if not seen.isdisjoint(block):
            collisions += 1
            if collisions > 1000:
                raise ValueError(
                    f"num_products={num_products} is more distinct products than "
                    f"the attribute vocabularies can make ({len(products)} made)"
                )
            continue
        products.extend(block)
        seen.update(block)
        block_index += 1
    shapes = {spec.path: spec.shape for spec in CATEGORIES}
    return [
        Product(
            group=f"p{i:05d}",
            category=category,
            shape=shapes[category],
            brand=brand,
            material=material,
            size=size,
            colour=colour,
            pattern=pattern,
        )
        for i, (category, brand, material, size, colour, pattern) in enumerate(products)
    ]


# ----------------------------------------------------------------------------------------
# Titles.
# ----------------------------------------------------------------------------------------


def compose_title(product: Product, rng: np.random.Generator) -> str:
    """One paraphrase of the product's title; it never names colour or pattern."""
    spec = _category_by_path()[product.category]

    def pick(options: Sequence[str]) -> str:
        return options[rng.integers(len(options))]

    brand = product.brand.upper() if rng.random() < 0.15 else product.brand
    body = pick(TITLE_TEMPLATES).format(
        brand=brand,
        noun=pick(spec.nouns),
        material=pick(MATERIAL_ALIASES[product.material]),
        size=pick(SIZE_FAMILIES[spec.size_family][product.size]),
    )
    words = [pick(TITLE_PREFIXES), body, pick(TITLE_SUFFIXES)]
    return " ".join(word for word in words if word)


def compose_titles(product: Product, count: int, rng: np.random.Generator) -> list[str]:
    """`count` titles for one product, distinct where the paraphrases allow."""
    titles: list[str] = []
    for _ in range(count):
        title = compose_title(product, rng)
        for _ in range(20):
            if title not in titles:
                break
            title = compose_title(product, rng)
        titles.append(title)
    return titles


# ----------------------------------------------------------------------------------------
# Silhouettes, drawn in unit coordinates: (u, v) in [-1, 1], v pointing down.
# ----------------------------------------------------------------------------------------

UnitToPixel = Callable[[float, float], tuple[float, float]]


def _box(to_px: UnitToPixel, u0: float, v0: float, u1: float, v1: float) -> list[float]:
    return [*to_px(u0, v0), *to_px(u1, v1)]


def _polygon(draw, to_px: UnitToPixel, points, fill: int) -> None:
    draw.polygon([to_px(u, v) for u, v in points], fill=fill)


def _regular_polygon(sides: int, radius: float, phase: float) -> list[tuple[float, float]]:
    return [
        (
            radius * math.cos(phase + 2 * math.pi * k / sides),
            radius * math.sin(phase + 2 * math.pi * k / sides),
        )
        for k in range(sides)
    ]


def _draw_mug(draw, to_px, unit):
    draw.ellipse(_box(to_px, 0.1, -0.45, 0.95, 0.45), fill=255)
    draw.ellipse(_box(to_px, 0.3, -0.22, 0.75, 0.22), fill=0)
    draw.rounded_rectangle(_box(to_px, -0.75, -0.75, 0.4, 0.8), radius=0.12 * unit, fill=255)


def _draw_tote(draw, to_px, unit):
    draw.ellipse(_box(to_px, -0.45, -0.95, 0.45, -0.1), outline=255, width=int(0.12 * unit))
    _polygon(draw, to_px, [(-0.7, -0.4), (0.7, -0.4), (0.88, 0.9), (-0.88, 0.9)], 255)


def _draw_circle(draw, to_px, unit):
    draw.ellipse(_box(to_px, -0.85, -0.85, 0.85, 0.85), fill=255)


def _draw_bottle(draw, to_px, unit):
    draw.rounded_rectangle(_box(to_px, -0.42, -0.4, 0.42, 0.95), radius=0.15 * unit, fill=255)
    _polygon(draw, to_px, [(-0.42, -0.3), (-0.2, -0.62), (0.2, -0.62), (0.42, -0.3)], 255)
    draw.rectangle(_box(to_px, -0.2, -0.75, 0.2, -0.55), fill=255)
    draw.rounded_rectangle(_box(to_px, -0.27, -0.97, 0.27, -0.74), radius=0.05 * unit, fill=255)


def _draw_plate(draw, to_px, unit):
    draw.ellipse(_box(to_px, -1.0, -0.6, 1.0, 0.6), fill=255)


def _draw_backpack(draw, to_px, unit):
    draw.ellipse(_box(to_px, -0.25, -1.0, 0.25, -0.6), outline=255, width=int(0.1 * unit))
    draw.rounded_rectangle(_box(to_px, -0.7, -0.75, 0.7, 0.95), radius=0.38 * unit, fill=255)


def _draw_kite(draw, to_px, unit):
    _polygon(draw, to_px, [(0.0, -1.0), (0.62, -0.3), (0.0, 0.75), (-0.62, -0.3)], 255)
    tail = [to_px(0.12 * math.sin(3 * t), 0.75 + 0.25 * t) for t in np.linspace(0, 1, 8)]
    draw.line(tail, fill=255, width=max(1, int(0.06 * unit)))


def _draw_dumbbell(draw, to_px, unit):
    draw.rectangle(_box(to_px, -0.7, -0.1, 0.7, 0.1), fill=255)
    for sign in (-1, 1):
        u0, u1 = sorted((sign * 0.95, sign * 0.55))
        draw.rounded_rectangle(_box(to_px, u0, -0.6, u1, 0.6), radius=0.1 * unit, fill=255)


def _draw_hexagon(draw, to_px, unit):
    _polygon(draw, to_px, _regular_polygon(6, 0.9, 0.0), 255)


def _draw_tshirt(draw, to_px, unit):
    _polygon(
        draw,
        to_px,
        [
            (-0.28, -0.88),
            (-1.0, -0.52),
            (-0.8, -0.15),
            (-0.58, -0.3),
            (-0.58, 0.95),
            (0.58, 0.95),
            (0.58, -0.3),
            (0.8, -0.15),
            (1.0, -0.52),
            (0.28, -0.88),
            (0.13, -0.74),
            (0.0, -0.71),
            (-0.13, -0.74),
        ],
        255,
    )


def _draw_triangle(draw, to_px, unit):
    _polygon(draw, to_px, _regular_polygon(3, 0.98, -math.pi / 2), 255)


def _draw_ring(draw, to_px, unit):
    draw.ellipse(_box(to_px, -0.92, -0.92, 0.92, 0.92), fill=255)
    draw.ellipse(_box(to_px, -0.42, -0.42, 0.42, 0.42), fill=0)


def _draw_rounded_square(draw, to_px, unit):
    draw.rounded_rectangle(_box(to_px, -0.8, -0.8, 0.8, 0.8), radius=0.3 * unit, fill=255)


def _draw_cap(draw, to_px, unit):
    draw.chord(_box(to_px, -0.8, -0.75, 0.8, 0.55), 180, 360, fill=255)
    draw.ellipse(_box(to_px, -0.2, -0.05, 1.0, 0.3), fill=255)
    draw.rectangle(_box(to_px, -0.8, -0.12, 0.3, 0.12), fill=255)


def _draw_star(draw, to_px, unit):
    outer = _regular_polygon(5, 1.0, -math.pi / 2)
    inner = _regular_polygon(5, 0.45, -math.pi / 2 + math.pi / 5)
    _polygon(draw, to_px, [p for pair in zip(outer, inner) for p in pair], 255)


def _draw_lamp(draw, to_px, unit):
    _polygon(draw, to_px, [(-0.42, -0.92), (0.42, -0.92), (0.85, 0.1), (-0.85, 0.1)], 255)
    draw.rectangle(_box(to_px, -0.08, 0.1, 0.08, 0.75), fill=255)
    draw.ellipse(_box(to_px, -0.5, 0.68, 0.5, 0.96), fill=255)


def _draw_umbrella(draw, to_px, unit):
    draw.chord(_box(to_px, -1.0, -0.85, 1.0, 0.45), 180, 360, fill=255)
    for k in range(4):
        centre = -0.75 + 0.5 * k
        draw.ellipse(_box(to_px, centre - 0.25, -0.33, centre + 0.25, -0.08), fill=0)
    draw.rectangle(_box(to_px, -0.05, -0.25, 0.05, 0.75), fill=255)
    draw.arc(_box(to_px, -0.35, 0.55, 0.05, 0.95), 0, 180, fill=255, width=int(0.1 * unit))


def _draw_heart(draw, to_px, unit):
    draw.ellipse(_box(to_px, -0.95, -0.8, 0.05, 0.2), fill=255)
    draw.ellipse(_box(to_px, -0.05, -0.8, 0.95, 0.2), fill=255)
    _polygon(draw, to_px, [(-0.92, -0.1), (0.92, -0.1), (0.0, 0.95)], 255)


SHAPE_DRAWERS = {
    "mug": _draw_mug,
    "tote": _draw_tote,
    "circle": _draw_circle,
    "bottle": _draw_bottle,
    "plate": _draw_plate,
    "backpack": _draw_backpack,
    "kite": _draw_kite,
    "dumbbell": _draw_dumbbell,
    "hexagon": _draw_hexagon,
    "tshirt": _draw_tshirt,
    "triangle": _draw_triangle,
    "ring": _draw_ring,
    "rounded_square": _draw_rounded_square,
    "cap": _draw_cap,
    "star": _draw_star,
    "lamp": _draw_lamp,
    "umbrella": _draw_umbrella,
    "heart": _draw_heart,
}


def _draw_shape_details(shape: str, draw, to_px: UnitToPixel, unit: float, ink) -> None:
    """Construction lines (rims, seams, spars) drawn over the pattern."""
    width = max(1, int(0.04 * unit))
    if shape == "plate":
        draw.ellipse(_box(to_px, -0.65, -0.38, 0.65, 0.38), outline=ink, width=width)
    elif shape == "backpack":
        draw.rounded_rectangle(
            _box(to_px, -0.42, 0.25, 0.42, 0.8), radius=0.12 * unit, outline=ink, width=width
        )
    elif shape == "kite":
        draw.line([to_px(0.0, -1.0), to_px(0.0, 0.75)], fill=ink, width=width)
        draw.line([to_px(-0.62, -0.3), to_px(0.62, -0.3)], fill=ink, width=width)
    elif shape == "umbrella":
        for u in (-0.5, 0.0, 0.5):
            draw.line([to_px(0.0, -0.85), to_px(u, -0.2)], fill=ink, width=width)
    elif shape == "bottle":
        draw.line([to_px(-0.27, -0.74), to_px(0.27, -0.74)], fill=ink, width=width)
    elif shape == "circle":
        draw.arc(_box(to_px, -1.3, -0.4, 0.3, 1.4), 280, 350, fill=ink, width=width)


# ----------------------------------------------------------------------------------------
# Product art: the textured silhouette in its canonical pose (cached per product).
# ----------------------------------------------------------------------------------------

OBJECT_EXTENT = 0.36  # Unit length as a fraction of the canvas: the object spans 72%.


def _pattern_ink(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (45, 40, 40) if luminance > 150 else (245, 242, 235)


def _draw_pattern(draw, pattern: str, canvas: int, ink) -> None:
    period = canvas / 6
    if pattern == "stripes":
        for k in range(7):
            draw.rectangle([0, k * period, canvas, k * period + period / 2], fill=ink)
    elif pattern == "dots":
        radius = 0.22 * period
        for row in range(8):
            for col in range(8):
                x = (col + 0.5 * (row % 2)) * period
                y = row * period
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=ink)
    elif pattern == "checks":
        cell = period / 2
        for row in range(13):
            for col in range(row % 2, 13, 2):
                draw.rectangle(
                    [col * cell, row * cell, (col + 1) * cell, (row + 1) * cell], fill=ink
                )
    elif pattern == "zigzag":
        width = max(1, int(period / 4))
        for k in range(7):
            y = k * period + period / 4
            points = [(j * period / 2, y + (period / 3 if j % 2 else 0)) for j in range(14)]
            draw.line(points, fill=ink, width=width, joint="curve")
    elif pattern != "plain":
        raise ValueError(f"unknown pattern {pattern!r}; known: {PATTERNS}")


def _darken(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(c * factor) for c in rgb)


def product_art(product: Product, canvas: int) -> Image.Image:
    """The product's silhouette, coloured and patterned, as an RGBA `canvas` square."""
    unit = OBJECT_EXTENT * canvas
    centre = canvas / 2

    def to_px(u: float, v: float) -> tuple[float, float]:
        return (centre + u * unit, centre + v * unit)

    mask = Image.new("L", (canvas, canvas), 0)
    SHAPE_DRAWERS[product.shape](ImageDraw.Draw(mask), to_px, unit)

    base = COLOURS[product.colour]
    texture = Image.new("RGB", (canvas, canvas), base)
    texture_draw = ImageDraw.Draw(texture)
    _draw_pattern(texture_draw, product.pattern, canvas, _pattern_ink(base))
    edge_ink = _darken(base, 0.55) if product.colour != "black" else (90, 90, 95)
    _draw_shape_details(product.shape, texture_draw, to_px, unit, edge_ink)

    edge_width = max(3, canvas // 64) | 1
    edge = Image.eval(mask.filter(ImageFilter.MinFilter(edge_width)), lambda p: 255 - p)
    texture = Image.composite(Image.new("RGB", texture.size, edge_ink), texture, edge)
    texture.putalpha(mask)
    return texture


# ----------------------------------------------------------------------------------------
# Listing photos: a viewpoint, a background and lighting around the product art.
# ----------------------------------------------------------------------------------------


def _place_art(art: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Rotates, scales and shifts the art (one affine warp, same canvas)."""
    canvas = art.size[0]
    angle = math.radians(rng.uniform(-20.0, 20.0))
    scale = rng.uniform(0.75, 1.05)
    shift_x, shift_y = rng.uniform(-0.08, 0.08, size=2) * canvas
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    out_x, out_y = canvas / 2 + shift_x, canvas / 2 + shift_y
    # PIL maps each output pixel back to its input pixel.
    coefficients = (
        cos,
        sin,
        canvas / 2 - cos * out_x - sin * out_y,
        -sin,
        cos,
        canvas / 2 + sin * out_x - cos * out_y,
    )
    return art.transform(
        art.size,
        Image.Transform.AFFINE,
        coefficients,
        resample=Image.Resampling.BICUBIC,
        fillcolor=(0, 0, 0, 0),
    )


def _linear_ramp(canvas: int, rng: np.random.Generator) -> np.ndarray:
    """A [-1, 1] ramp along a random direction, shape [canvas, canvas, 1]."""
    direction = rng.uniform(0, 2 * math.pi)
    coords = np.linspace(-1.0, 1.0, canvas, dtype=np.float32)
    ramp = math.cos(direction) * coords[None, :] + math.sin(direction) * coords[:, None]
    return (ramp / math.sqrt(2))[..., None]


def _background(canvas: int, rng: np.random.Generator) -> np.ndarray:
    """A tinted backdrop with a gradient and soft blotches, float32 [canvas, canvas, 3]."""
    grey = rng.uniform(185, 248) if rng.random() < 0.85 else rng.uniform(110, 160)
    tint = rng.uniform(-12, 12, size=3)
    blotches = rng.normal(0.0, 7.0, size=(5, 5, 3))
    blotch_image = Image.fromarray(np.clip(blotches + 128, 0, 255).astype(np.uint8))
    blotch_image = blotch_image.resize((canvas, canvas), Image.Resampling.BICUBIC)
    smooth = np.asarray(blotch_image, dtype=np.float32) - 128.0
    gradient = rng.uniform(5, 20) * _linear_ramp(canvas, rng)
    return (grey + tint).astype(np.float32) + gradient + smooth


def _shadow(alpha: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """Soft drop shadow of the placed object, float32 [canvas, canvas, 1] in [0, 1]."""
    canvas = alpha.size[0]
    offset = tuple(int(v) for v in rng.integers(1, max(2, canvas // 30), size=2))
    shifted = Image.new("L", alpha.size, 0)
    shifted.paste(alpha, offset)
    blurred = shifted.filter(ImageFilter.GaussianBlur(canvas / 60))
    return np.asarray(blurred, dtype=np.float32)[..., None] / 255.0


def render_listing_image(
    art: Image.Image, image_size: int, rng: np.random.Generator
) -> Image.Image:
    """One listing photo of a product: `image_size` square RGB.

    `art` is `product_art(product, 2 * image_size)`; the photo is composed at twice the
    size and box-filtered down, so pattern edges stay clean after resizing.
    """
    canvas = art.size[0]
    placed = _place_art(art, rng)
    alpha_image = placed.getchannel("A")
    alpha = np.asarray(alpha_image, dtype=np.float32)[..., None] / 255.0
    colour = np.asarray(placed.convert("RGB"), dtype=np.float32)

    backdrop = _background(canvas, rng)
    backdrop *= 1.0 - rng.uniform(0.15, 0.35) * _shadow(alpha_image, rng)
    photo = backdrop * (1.0 - alpha) + colour * alpha
    lighting = rng.uniform(0.9, 1.1) + rng.uniform(0.0, 0.08) * _linear_ramp(canvas, rng)
    photo = np.clip(photo * lighting, 0, 255).astype(np.uint8)

    small = np.asarray(Image.fromarray(photo).reduce(canvas // image_size), dtype=np.float32)
    small += rng.normal(0.0, rng.uniform(1.0, 4.0), size=small.shape)
    return Image.fromarray(np.clip(np.rint(small), 0, 255).astype(np.uint8))


# ----------------------------------------------------------------------------------------
# The catalog on disk.
# ----------------------------------------------------------------------------------------


def _check_arguments(
    num_products: int,
    listings_per_product: int,
    image_size: int,
    seed: int,
    missing_modality_fraction: float,
) -> None:
    if num_products < 1:
        raise ValueError(f"num_products must be >= 1, got {num_products}")
    if listings_per_product < 1:
        raise ValueError(f"listings_per_product must be >= 1, got {listings_per_product}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16 pixels, got {image_size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 0.0 <= missing_modality_fraction < 1.0:
        raise ValueError(
            f"missing_modality_fraction must be in [0, 1), got {missing_modality_fraction}"
        )


def _missing_modalities(num_listings: int, fraction: float, seed: int) -> dict[int, str]:
    """Listing index -> "image" or "title" for the listings that lose one modality."""
    rng = np.random.default_rng([seed, 3])
    count = int(round(fraction * num_listings))
    chosen = sorted(rng.choice(num_listings, size=count, replace=False).tolist())
    return {index: ("image" if rng.random() < 0.5 else "title") for index in chosen}


def _product_record(product: Product) -> dict[str, str]:
    return dataclasses.asdict(product)


def generate_catalog(
    out_dir,
    *,
    num_products: int = 300,
    listings_per_product: int = 4,
    image_size: int = 96,
    seed: int = 0,
    missing_modality_fraction: float = 0.0,
) -> pathlib.Path:
    """Writes the catalog under `out_dir` and returns the path of its manifest.

    Files: `manifest.jsonl` (one listing a line: id, title, image, category, group),
    `images/<id>.png`, and `products.jsonl` (each group's ground-truth attributes; see
    `describe_attributes`). A listing chosen by `missing_modality_fraction` has either
    `"image": ""` (and no file) or `"title": ""`, never both.
    """
    _check_arguments(
        num_products, listings_per_product, image_size, seed, missing_modality_fraction
    )
    out_dir = pathlib.Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    products = build_products(num_products, seed)
    missing = _missing_modalities(
        num_products * listings_per_product, missing_modality_fraction, seed
    )

    manifest_lines = []
    for product_index, product in enumerate(products):
        titles = compose_titles(
            product, listings_per_product, np.random.default_rng([seed, 1, product_index])
        )
        art = product_art(product, 2 * image_size)
        for listing_index, title in enumerate(titles):
            listing_id = f"{product.group}_l{listing_index}"
            image_path = f"images/{listing_id}.png"
            dropped = missing.get(product_index * listings_per_product + listing_index)
            if dropped != "image":
                rng = np.random.default_rng([seed, 2, product_index, listing_index])
                render_listing_image(art, image_size, rng).save(out_dir / image_path, format="PNG")
            record = {
                "id": listing_id,
                "title": "" if dropped == "title" else title,
                "image": "" if dropped == "image" else image_path,
                "category": product.category,
                "group": product.group,
            }
            manifest_lines.append(json.dumps(record, ensure_ascii=False))

    manifest_path = out_dir / "manifest.jsonl"
    manifest_path.write_text("\n".join(manifest_lines) + "\n", encoding="utf-8")
    products_lines = [json.dumps(_product_record(p), ensure_ascii=False) for p in products]
    (out_dir / "products.jsonl").write_text("\n".join(products_lines) + "\n", encoding="utf-8")
    return manifest_path


def summarize(manifest_path: pathlib.Path) -> str:
    """A one-line summary of a written catalog."""
    records = [json.loads(line) for line in manifest_path.read_text("utf-8").splitlines()]
    categories = collections.Counter(r["category"] for r in records)
    departments = {c.split("/")[0] for c in categories}
    groups = {r["group"] for r in records}
    no_image = sum(1 for r in records if not r["image"])
    no_title = sum(1 for r in records if not r["title"])
    return (
        f"wrote {len(records)} listings of {len(groups)} products in {len(categories)} "
        f"categories ({len(departments)} departments; {no_image} without image, "
        f"{no_title} without title) to {manifest_path}"
    )
