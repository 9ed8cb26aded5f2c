"""Read pictures back: boxes, edges and bars from llmc's SVG, for the viz tests."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

NS = {"svg": "http://www.w3.org/2000/svg"}
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")

Point = tuple[float, float]


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.x + self.width

    @property
    def bottom(self) -> float:
        return self.y + self.height

    def overlaps(self, other: Rect) -> bool:
        return (
            self.x < other.right
            and other.x < self.right
            and self.y < other.bottom
            and other.y < self.bottom
        )

    def on_border(self, point: Point, tolerance: float = 0.11) -> bool:
        x, y = point
        inside_x = self.x - tolerance <= x <= self.right + tolerance
        inside_y = self.y - tolerance <= y <= self.bottom + tolerance
        near_x = min(abs(x - self.x), abs(x - self.right)) <= tolerance
        near_y = min(abs(y - self.y), abs(y - self.bottom)) <= tolerance
        return (inside_x and near_y) or (inside_y and near_x)

    def strictly_contains(self, point: Point, margin: float = 0.5) -> bool:
        x, y = point
        return (
            self.x + margin < x < self.right - margin and self.y + margin < y < self.bottom - margin
        )


def parse(svg: str) -> ET.Element:
    """The SVG's root element; fails on malformed XML."""
    return ET.fromstring(svg)


def find(element: ET.Element, path: str) -> ET.Element:
    """The first element at ``path`` (SVG namespace ``svg:``); fails when there is none."""
    found = element.find(path, NS)
    assert found is not None, f"no {path} in the picture"
    return found


def findtext(element: ET.Element, path: str) -> str:
    """The text of the first element at ``path``; fails when there is none."""
    return find(element, path).text or ""


def rect_of(element: ET.Element) -> Rect:
    return Rect(*(float(element.attrib[k]) for k in ("x", "y", "width", "height")))


def boxes(root: ET.Element) -> dict[int, Rect]:
    """Each task's box, by id."""
    found = {}
    for node in root.iterfind(".//svg:g[@data-task]", NS):
        if "node" in node.attrib["class"].split():
            found[int(node.attrib["data-task"])] = rect_of(find(node, "svg:rect"))
    return found


def edges(root: ET.Element) -> list[tuple[int, int, str]]:
    """(source, target, path data) of each edge of a plan picture."""
    return [
        (int(p.attrib["data-source"]), int(p.attrib["data-target"]), p.attrib["d"])
        for p in root.iterfind(".//svg:path", NS)
        if "edge" in p.attrib.get("class", "").split()
    ]


def endpoints(path: str) -> tuple[Point, Point]:
    numbers = [float(n) for n in NUMBER.findall(path)]
    return (numbers[0], numbers[1]), (numbers[-2], numbers[-1])


def pieces(path: str) -> list[list[Point]]:
    """A path's straight lines (2 points) and cubic curves (4 points), in absolute terms."""
    found: list[list[Point]] = []
    here: Point = (0.0, 0.0)
    for command, args in re.findall(r"([MLC])([^MLC]*)", path):
        numbers = [float(n) for n in NUMBER.findall(args)]
        points = list(zip(numbers[::2], numbers[1::2], strict=True))
        if command == "M":
            here = points[0]
        elif command == "L":
            found.append([here, points[0]])
            here = points[0]
        else:
            found.append([here, *points])
            here = points[-1]
    return found


def sample(piece: list[Point], steps: int = 24) -> list[Point]:
    """Points along a line or a cubic Bézier."""
    out = []
    for i in range(steps + 1):
        t = i / steps
        if len(piece) == 2:
            (x0, y0), (x1, y1) = piece
            out.append((x0 + (x1 - x0) * t, y0 + (y1 - y0) * t))
        else:
            (x0, y0), (x1, y1), (x2, y2), (x3, y3) = piece
            u = 1 - t
            out.append(
                (
                    u**3 * x0 + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t**3 * x3,
                    u**3 * y0 + 3 * u * u * t * y1 + 3 * u * t * t * y2 + t**3 * y3,
                )
            )
    return out


def check_plan_picture(svg: str, expected_edges: set[tuple[int, int]]) -> ET.Element:
    """The invariants of every plan picture: well-formed, boxes apart, edges from box to box
    and never through a third box, everything inside the canvas."""
    root = parse(svg)
    found = boxes(root)
    width, height = float(root.attrib["width"]), float(root.attrib["height"])
    items = sorted(found.items())
    for i, (a, rect_a) in enumerate(items):
        assert rect_a.x >= 0 and rect_a.right <= width and rect_a.y >= 0
        assert rect_a.bottom <= height, (a, rect_a, height)
        for b, rect_b in items[i + 1 :]:
            assert not rect_a.overlaps(rect_b), (a, rect_a, b, rect_b)
    drawn = edges(root)
    assert {(s, t) for s, t, _ in drawn} == expected_edges
    assert len(drawn) == len(expected_edges)
    for source, target, path in drawn:
        start, end = endpoints(path)
        assert found[source].on_border(start), (source, start, found[source])
        assert found[target].on_border(end), (target, end, found[target])
        for piece in pieces(path):
            for point in sample(piece):
                for other, rect in found.items():
                    assert not rect.strictly_contains(point), (source, target, other, point)
                assert -0.5 <= point[0] <= width + 0.5 and -0.5 <= point[1] <= height + 0.5
    return root
