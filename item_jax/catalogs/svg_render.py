"""A small SVG renderer: the subset of SVG that OpenMoji's artwork uses, drawn with Pillow.

OpenMoji's npm package ships SVG only (`emoji.py` turns its drawings into listings). This
renders path, circle, ellipse, rect, line, polyline, polygon, groups, transforms, solid
fills and strokes, supersampled for anti-aliasing. Strokes always get round joins and
caps, which is what OpenMoji draws with. Not drawn: dash patterns (solid instead), clip
paths and markers, which OpenMoji 17.0.0 uses in 14 dashed strokes and in two regional
flags among its extras; a gradient or pattern paint without a fallback colour raises
`ValueError` (the importer then skips the drawing and counts it).
"""

import io
import math
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageColor, ImageDraw

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PATH_TOKEN = re.compile(r"[MmZzLlHhVvCcSsQqTtAa]|" + _NUMBER)
_CURVE_STEPS = 12
_ARC_STEP_RADIANS = math.pi / 16
_ELLIPSE_STEPS = 64
_SUPERSAMPLE = 4
_SKIPPED_SVG_TAGS = frozenset(
    (
        "defs",
        "clipPath",
        "mask",
        "linearGradient",
        "radialGradient",
        "pattern",
        "marker",
        "symbol",
        "style",
        "title",
        "desc",
        "metadata",
    )
)
_INHERITED_STYLE = (
    "fill",
    "stroke",
    "stroke-width",
    "fill-rule",
    "fill-opacity",
    "stroke-opacity",
    "color",
    "paint-order",
)
_DEFAULT_STYLE = {
    "fill": "black",
    "stroke": "none",
    "stroke-width": "1",
    "fill-rule": "nonzero",
    "fill-opacity": "1",
    "stroke-opacity": "1",
    "color": "black",
    "paint-order": "normal",
    "opacity": 1.0,
}

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
        points.append(
            tuple(
                u**3 * s + 3 * u * u * t * c1 + 3 * u * t * t * c2 + t**3 * e
                for s, c1, c2, e in zip(start, control1, control2, end)
            )
        )
    return points


def _quadratic_points(start: Point, control: Point, end: Point) -> list[Point]:
    points = []
    for step in range(1, _CURVE_STEPS + 1):
        t = step / _CURVE_STEPS
        u = 1.0 - t
        points.append(
            tuple(u * u * s + 2 * u * t * c + t * t * e for s, c, e in zip(start, control, end))
        )
    return points


def _arc_points(
    start: Point, radii: Point, rotation_degrees: float, large_arc: bool, sweep: bool, end: Point
) -> list[Point]:
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
        points.append(
            (
                cx + rx * math.cos(theta) * cos_phi - ry * math.sin(theta) * sin_phi,
                cy + rx * math.cos(theta) * sin_phi + ry * math.sin(theta) * cos_phi,
            )
        )
    points.append(end)
    return points


def parse_path_data(data: str) -> list[Subpath]:
    """SVG path data -> flattened subpaths in user units."""
    tokens = _PathTokens(data)
    subpaths: list[Subpath] = []
    current: list[Point] = []
    position = subpath_start = (0.0, 0.0)
    command = previous = ""
    last_control: Point | None = None

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

        # Called only within this iteration, so binding the offsets as defaults changes nothing.
        def point(offset_x: float = offset_x, offset_y: float = offset_y) -> Point:
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
            return _multiply(
                _multiply((1.0, 0.0, 0.0, 1.0, centre_x, centre_y), rotation),
                (1.0, 0.0, 0.0, 1.0, -centre_x, -centre_y),
            )
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
    return (
        a1 * a2 + c1 * b2,
        b1 * a2 + d1 * b2,
        a1 * c2 + c1 * d2,
        b1 * c2 + d1 * d2,
        a1 * e2 + c1 * f2 + e1,
        b1 * e2 + d1 * f2 + f1,
    )


def _apply(matrix: Matrix, points: Sequence[Point]) -> list[Point]:
    a, b, c, d, e, f = matrix
    return [(a * x + c * y + e, b * x + d * y + f) for x, y in points]


def _numbers(text: str | None) -> list[float]:
    return [float(value) for value in re.findall(_NUMBER, text or "")]


def _first_number(text: str | None, default: float) -> float:
    values = _numbers(text)
    return values[0] if values else default


def _length(element: ElementTree.Element, name: str) -> float:
    return _first_number(element.get(name), 0.0)


def _ellipse_subpath(cx: float, cy: float, rx: float, ry: float) -> list[Subpath]:
    if rx <= 0 or ry <= 0:
        return []
    points = [
        (
            cx + rx * math.cos(2 * math.pi * step / _ELLIPSE_STEPS),
            cy + ry * math.sin(2 * math.pi * step / _ELLIPSE_STEPS),
        )
        for step in range(_ELLIPSE_STEPS)
    ]
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
        f" V{y + ry} A{rx},{ry} 0 0 1 {x + rx},{y} Z"
    )


def _shape_subpaths(tag: str, element: ElementTree.Element) -> list[Subpath]:
    """The outline of one drawing element in its own user units."""
    if tag == "path":
        return parse_path_data(element.get("d", ""))
    if tag == "circle":
        radius = _length(element, "r")
        return _ellipse_subpath(_length(element, "cx"), _length(element, "cy"), radius, radius)
    if tag == "ellipse":
        return _ellipse_subpath(
            _length(element, "cx"),
            _length(element, "cy"),
            _length(element, "rx"),
            _length(element, "ry"),
        )
    if tag == "rect":
        return _rect_subpaths(element)
    if tag == "line":
        return [
            (
                [
                    (_length(element, "x1"), _length(element, "y1")),
                    (_length(element, "x2"), _length(element, "y2")),
                ],
                False,
            )
        ]
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


def _paint_rgb(paint: str, style: Mapping) -> tuple[int, int, int] | None:
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


def _composite(
    canvas: Image.Image, mask: Image.Image, rgb: tuple[int, int, int], alpha: float
) -> None:
    box = mask.getbbox()
    if box is None or alpha <= 0:
        return
    region = mask.crop(box)
    if alpha < 1:
        region = region.point(lambda value: round(value * alpha))
    layer = Image.new("RGBA", region.size, rgb + (0,))
    layer.putalpha(region)
    canvas.alpha_composite(layer, dest=box[:2])


def _paint_shape(
    canvas: Image.Image, subpaths: list[Subpath], matrix: Matrix, style: Mapping
) -> None:
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


def _draw_element(
    canvas: Image.Image, element: ElementTree.Element, matrix: Matrix, parent_style: Mapping
) -> None:
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


def render_svg(svg: bytes, size: int) -> Image.Image:
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
    _draw_element(
        canvas, root, (scale, 0.0, 0.0, scale, -min_x * scale, -min_y * scale), _DEFAULT_STYLE
    )
    return canvas.resize((size, size), Image.Resampling.BOX)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
