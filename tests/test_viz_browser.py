"""The pictures display in a real browser: headless Chromium renders them to PNG screenshots
that have the pictures' size, ink and colours.

Slow (a browser start per picture); skipped where Chromium is not installed (``.ci/run``
installs Debian's ``chromium``).
"""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from test_viz import PARALLEL_QA, failing_run
from test_viz_timeline import two_branch_trace

from llmc import Plan

CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"
)


def screenshot(svg: str, folder: Path, name: str) -> tuple[int, int, list[bytes], int, int]:
    """Render ``svg`` in headless Chromium; return the PNG's size, rows and the SVG's size."""
    width = math.ceil(float(svg.split('width="', 1)[1].split('"', 1)[0]))
    height = math.ceil(float(svg.split('height="', 1)[1].split('"', 1)[0]))
    source = folder / f"{name}.svg"
    source.write_text(svg, encoding="utf-8")
    png = folder / f"{name}.png"
    window = (width + 40, height + 40)
    assert CHROMIUM is not None
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={folder / ('profile-' + name)}",
            f"--screenshot={png}",
            f"--window-size={window[0]},{window[1]}",
            source.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=90,
    )
    png_width, png_height, rows = decode_png(png.read_bytes())
    return png_width, png_height, rows, width, height


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit RGB or RGBA PNG (the standard library only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    at, chunks, header = 8, [], b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        at += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    step = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * step
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - step] if i >= step else 0
            up = previous[i]
            corner = previous[i - step] if i >= step else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                guess = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                line[i] = (line[i] + guess) & 0xFF
        previous = line
        rows.append(bytes(b for i, b in enumerate(line) if i % step < 3))
    return width, height, rows


def ink(rows: list[bytes]) -> tuple[int, int, int]:
    """Pixels that are not white, and the rightmost and lowest of them."""
    count = right = bottom = 0
    for y, row in enumerate(rows):
        for x in range(0, len(row), 3):
            if row[x] < 245 or row[x + 1] < 245 or row[x + 2] < 245:
                count += 1
                right = max(right, x // 3)
                bottom = y
    return count, right, bottom


def pixels_near(rows: list[bytes], colour: str, tolerance: int = 24) -> int:
    target = bytes.fromhex(colour.lstrip("#"))
    return sum(
        1
        for row in rows
        for x in range(0, len(row), 3)
        if all(abs(row[x + c] - target[c]) <= tolerance for c in range(3))
    )


def test_plan_and_timeline_display_in_chromium(tmp_path: Path) -> None:
    plan, result = failing_run()
    pictures = {
        "plan": Plan.parse(PARALLEL_QA).to_svg(title='ParallelQA <plan> & "quotes"'),
        "run": plan.to_svg(trace=result, direction="LR"),
        "timeline": two_branch_trace().to_svg(title="timeline"),
    }
    for name, svg in pictures.items():
        png_width, png_height, rows, width, height = screenshot(svg, tmp_path, name)
        assert (png_width, png_height) == (width + 40, height + 40)
        count, right, bottom = ink(rows)
        area = width * height
        assert 0.01 * area < count < 0.7 * area, (name, count, area)
        # the drawing fills its own canvas and nothing beyond it
        assert width * 0.6 < right <= width, (name, right, width)
        assert height * 0.6 < bottom <= height, (name, bottom, height)
        if name == "run":
            assert pixels_near(rows, "#dcfce7", 6) > 500  # done boxes are green
            assert pixels_near(rows, "#fee2e2", 6) > 300  # the failed one is red
        if name == "timeline":
            assert pixels_near(rows, "#ea580c", 40) > 100  # the critical path in orange
