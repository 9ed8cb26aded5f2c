"""A layered drawing of a DAG, after Sugiyama: ranks, dummy points, fewer crossings, routes.

1. Ranks are given (a plan's dependency levels); every edge goes from a lower rank to a
   higher one.
2. An edge that spans several ranks passes through one *dummy point* per rank in between.
   Edges from one source share their dummy points (a trunk that branches), so a task used by
   many later tasks draws one line, not many parallel ones.
3. Barycenter sweeps, down and up, order each rank to cut crossings; the best ordering seen
   wins. Members of a cluster (a fused group) stay next to each other.
4. Coordinates along a rank come from repeated weighted isotonic regression (each item pulled
   to the mean of its neighbours, never closer to the next item than the gap allows); long
   edges weigh more, so they run straight.
5. Routes: a cubic Bézier across each gap between ranks, a straight line through each rank
   (at its dummy point, where nothing else is), and straight stubs between a box and its
   rank's edge. A route never enters a box other than its two ends.

Everything is computed in "order" (along a rank) and "rank" coordinates and turned into x and
y at the end: top-down (``"TB"``) puts ranks in rows, left-right (``"LR"``) in columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from ._svg import num

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Spacing:
    """Distances of a layout, in px.

    Attributes:
        node_gap: between two boxes of one rank.
        dummy_gap: between a line passing through a rank and its neighbours.
        rank_gap: the least space between two ranks (more when edges run far sideways).
        cluster_pad: room for a cluster's outline around its boxes.
        port_gap: between the ends of two edges on one side of a box.
    """

    node_gap: float = 28.0
    dummy_gap: float = 12.0
    rank_gap: float = 44.0
    cluster_pad: float = 8.0
    port_gap: float = 12.0


@dataclass(frozen=True, slots=True)
class Box:
    """A placed node: its top-left corner, size and rank."""

    key: int
    x: float
    y: float
    width: float
    height: float
    rank: int


@dataclass(frozen=True, slots=True)
class Route:
    """The drawing of one edge.

    Attributes:
        source: the edge's source node.
        target: its target node.
        path: SVG path data (``M``, ``L`` and ``C`` commands).
        start: where it leaves the source's box (on its border).
        end: where it reaches the target's box (on its border).
        beziers: the curves of the path, as (start, control, control, end) points.
        lines: the straight pieces of the path, as (start, end) points.
    """

    source: int
    target: int
    path: str
    start: Point
    end: Point
    beziers: tuple[tuple[Point, Point, Point, Point], ...]
    lines: tuple[tuple[Point, Point], ...]


@dataclass(slots=True)
class Layout:
    """A placed graph.

    Attributes:
        boxes: each node's box, by key.
        routes: one per edge, in the order the edges were given.
        orders: each rank's nodes in drawing order (left to right, or top to bottom).
        width: the drawing's width, from the origin.
        height: its height, from the origin.
    """

    boxes: dict[int, Box] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    orders: list[list[int]] = field(default_factory=list)
    width: float = 0.0
    height: float = 0.0


def layout(
    nodes: Sequence[int],
    edges: Sequence[tuple[int, int]],
    ranks: Mapping[int, int],
    sizes: Mapping[int, tuple[float, float]],
    *,
    direction: str = "TB",
    clusters: Mapping[int, int] | None = None,
    spacing: Spacing | None = None,
    origin: Point = (0.0, 0.0),
) -> Layout:
    """Lay out a DAG in ranks.

    Args:
        nodes: the node keys; their order breaks ties (earlier goes first).
        edges: (source, target) pairs, each target on a higher rank than its source.
        ranks: each node's rank, from 0.
        sizes: each node's (width, height) in px.
        direction: ``"TB"`` (ranks top to bottom) or ``"LR"`` (left to right).
        clusters: a cluster number for the nodes that belong to one; a cluster's nodes on
            one rank are placed side by side.
        spacing: distances; defaults to :class:`Spacing`'s.
        origin: where the drawing's top-left corner goes.

    Returns:
        the boxes, the routes and the size of the drawing.

    Raises:
        ValueError: an edge does not go to a higher rank, or the direction is unknown.
    """
    if direction not in ("TB", "LR"):
        raise ValueError(f"direction must be 'TB' or 'LR', got {direction!r}")
    if not nodes:
        return Layout()
    graph = _Graph(nodes, edges, ranks, sizes, direction, clusters or {}, spacing or Spacing())
    graph.order()
    graph.place()
    return graph.result(origin)


class _Graph:
    """The working state of one layout: items are nodes first, then dummy points."""

    def __init__(
        self,
        nodes: Sequence[int],
        edges: Sequence[tuple[int, int]],
        ranks: Mapping[int, int],
        sizes: Mapping[int, tuple[float, float]],
        direction: str,
        clusters: Mapping[int, int],
        spacing: Spacing,
    ) -> None:
        self.spacing = spacing
        self.direction = direction
        self.keys = list(nodes)
        index = {key: i for i, key in enumerate(self.keys)}
        self.real = len(self.keys)
        self.rank = [ranks[key] for key in self.keys]
        tb = direction == "TB"
        self.osize = [sizes[key][0 if tb else 1] for key in self.keys]
        self.rsize = [sizes[key][1 if tb else 0] for key in self.keys]
        self.cluster = [clusters.get(key, -1) for key in self.keys]
        self.up: list[dict[int, float]] = [{} for _ in self.keys]
        self.down: list[dict[int, float]] = [{} for _ in self.keys]
        self.chains: list[tuple[int, int, list[int]]] = []

        reach: dict[int, int] = {}  # a source's farthest target rank
        for source, target in edges:
            if ranks[target] <= ranks[source]:
                raise ValueError(
                    f"edge {source} -> {target} must go to a higher rank "
                    f"({ranks[source]} -> {ranks[target]})"
                )
            reach[source] = max(reach.get(source, -1), ranks[target])
        trunk: dict[tuple[int, int], int] = {}  # (source, rank) -> its dummy point
        for key in nodes:
            if key not in reach:
                continue
            previous = index[key]
            for rank in range(ranks[key] + 1, reach[key]):
                dummy = self._add_dummy(key, rank)
                trunk[key, rank] = dummy
                self._link(previous, dummy)
                previous = dummy
        for source, target in edges:
            chain = [index[source]]
            chain += [trunk[source, r] for r in range(ranks[source] + 1, ranks[target])]
            chain.append(index[target])
            self._link(chain[-2], chain[-1])
            self.chains.append((source, target, chain))
        depth = max(self.rank) + 1
        self.layers: list[list[int]] = [[] for _ in range(depth)]
        for item, rank in enumerate(self.rank):
            self.layers[rank].append(item)
        self.x = [0.0] * len(self.rank)
        self.rank_start = [0.0] * depth
        self.rank_end = [0.0] * depth

    def _add_dummy(self, source: int, rank: int) -> int:
        self.keys.append(source)
        self.rank.append(rank)
        self.osize.append(0.0)
        self.rsize.append(0.0)
        self.cluster.append(-1)
        self.up.append({})
        self.down.append({})
        return len(self.rank) - 1

    def is_dummy(self, item: int) -> bool:
        """Whether an item is a dummy point (a long edge passing through a rank)."""
        return item >= self.real

    def _link(self, upper: int, lower: int) -> None:
        weight = 1.0 + 1.5 * self.is_dummy(upper) + 1.5 * self.is_dummy(lower)
        weight = 8.0 if self.is_dummy(upper) and self.is_dummy(lower) else weight
        self.down[upper][lower] = weight
        self.up[lower][upper] = weight

    # -- ordering ----------------------------------------------------------------------

    def order(self) -> None:
        """Reorder every rank by barycenter sweeps; keep the ordering with fewest crossings."""
        position = self._positions()
        for layer in self.layers:  # clusters side by side from the start
            self._sort_by(layer, {item: float(position[item]) for item in layer}, position)
        best = [list(layer) for layer in self.layers]
        best_crossings = self._crossings(position)
        stalled = 0
        rounds = 12 if len(self.rank) <= 400 else 6
        for _ in range(rounds):
            if best_crossings == 0:
                break
            for rank in range(1, len(self.layers)):
                self._sort(rank, self.up, position)
            for rank in range(len(self.layers) - 2, -1, -1):
                self._sort(rank, self.down, position)
            crossings = self._crossings(position)
            if crossings < best_crossings:
                best, best_crossings, stalled = [list(la) for la in self.layers], crossings, 0
            else:
                stalled += 1
                if stalled >= 3:
                    break
        self.layers = best
        self._transpose()

    def _transpose(self) -> None:
        """Swap neighbours in a rank where that removes crossings, or keeps them and puts the
        nodes back in their given order (a task list reads best in id order)."""
        position = self._positions()
        for _ in range(8):
            swapped = False
            for layer in self.layers:
                for i in range(len(layer) - 1):
                    u, v = layer[i], layer[i + 1]
                    if self.cluster[u] != self.cluster[v]:
                        continue  # keeps every cluster side by side
                    now = self._pair_crossings(u, v, position)
                    then = self._pair_crossings(v, u, position)
                    natural = not self.is_dummy(u) and not self.is_dummy(v) and v < u
                    if then < now or (then == now and natural):
                        layer[i], layer[i + 1] = v, u
                        position[u], position[v] = i + 1, i
                        swapped = True
            if not swapped:
                return

    def _pair_crossings(self, left: int, right: int, position: list[int]) -> int:
        """Crossings between the edges of ``left`` and ``right`` if ``left`` came first."""
        count = 0
        for side in (self.up, self.down):
            for a in side[left]:
                for b in side[right]:
                    count += position[a] > position[b]
        return count

    def _positions(self) -> list[int]:
        position = [0] * len(self.rank)
        for layer in self.layers:
            for i, item in enumerate(layer):
                position[item] = i
        return position

    def _sort(self, rank: int, neighbours: list[dict[int, float]], position: list[int]) -> None:
        layer = self.layers[rank]
        other = self.layers[rank - 1] if neighbours is self.up else self.layers[rank + 1]
        stretch = (len(other) - 1) / max(len(layer) - 1, 1)
        bary: dict[int, float] = {}
        for item in layer:
            near = neighbours[item]
            if near:
                bary[item] = sum(position[n] for n in near) / len(near)
            else:
                bary[item] = position[item] * stretch
        self._sort_by(layer, bary, position)

    def _sort_by(self, layer: list[int], bary: dict[int, float], position: list[int]) -> None:
        """Sort a rank by barycenter, each cluster as one block at its members' mean."""
        grouped: dict[int, list[float]] = {}
        for item in layer:
            if self.cluster[item] >= 0:
                grouped.setdefault(self.cluster[item], []).append(bary[item])
        centre = {cluster: sum(values) / len(values) for cluster, values in grouped.items()}

        def key(item: int) -> tuple[float, int, float, int]:
            cluster = self.cluster[item]
            first = centre[cluster] if cluster >= 0 else bary[item]
            return (first, cluster, bary[item], position[item])

        layer.sort(key=key)
        for i, item in enumerate(layer):
            position[item] = i

    def _crossings(self, position: list[int]) -> int:
        total = 0
        for rank in range(len(self.layers) - 1):
            pairs = sorted(
                (position[a], position[b]) for a in self.layers[rank] for b in self.down[a]
            )
            total += _inversions([b for _, b in pairs], len(self.layers[rank + 1]))
        return total

    # -- coordinates -------------------------------------------------------------------

    def _gap(self, a: int, b: int) -> float:
        s = self.spacing
        gap = s.node_gap if not (self.is_dummy(a) or self.is_dummy(b)) else s.dummy_gap
        if self.cluster[a] != self.cluster[b]:
            gap = max(gap, s.dummy_gap + s.cluster_pad) + s.cluster_pad
        return (self.osize[a] + self.osize[b]) / 2 + gap

    def place(self) -> None:
        """Coordinates along each rank, then the position of each rank."""
        for layer in self.layers:
            offset = 0.0
            for i, item in enumerate(layer):
                if i:
                    offset += self._gap(layer[i - 1], item)
                self.x[item] = offset
            for item in layer:
                self.x[item] -= offset / 2
        last = len(self.layers) - 1
        for _ in range(8):
            for rank in range(1, last + 1):
                self._align(self.layers[rank], (self.up,))
            for rank in range(last - 1, -1, -1):
                self._align(self.layers[rank], (self.down,))
        for _ in range(2):
            for rank in range(last + 1):
                self._align(self.layers[rank], (self.up, self.down))
        left = min(self.x[i] - self.osize[i] / 2 for i in range(len(self.x)))
        self.x = [x - left for x in self.x]
        self._place_ranks()

    def _align(self, layer: list[int], sides: tuple[list[dict[int, float]], ...]) -> None:
        targets: list[float | None] = []
        weights: list[float] = []
        offsets: list[float] = []
        offset = 0.0
        for i, item in enumerate(layer):
            if i:
                offset += self._gap(layer[i - 1], item)
            total = weight = 0.0
            for side in sides:
                for other, w in side[item].items():
                    total += self.x[other] * w
                    weight += w
            targets.append(total / weight - offset if weight else None)
            weights.append(weight or 0.05)
            offsets.append(offset)
        values = _fill_gaps(
            targets, [self.x[item] - o for item, o in zip(layer, offsets, strict=True)]
        )
        for item, value, offset in zip(layer, _isotonic(values, weights), offsets, strict=True):
            self.x[item] = value + offset

    def _place_ranks(self) -> None:
        at = 0.0
        for rank, layer in enumerate(self.layers):
            if rank:
                spread = max(
                    (
                        abs(self.x[a] - self.x[b])
                        for a in self.layers[rank - 1]
                        for b in self.down[a]
                    ),
                    default=0.0,
                )
                at += self.spacing.rank_gap + min(self.spacing.rank_gap, spread * 0.08)
            size = max((self.rsize[i] for i in layer), default=0.0)
            self.rank_start[rank], self.rank_end[rank] = at, at + size
            at += size

    # -- the result --------------------------------------------------------------------

    def _point(self, origin: Point, along: float, across: float) -> Point:
        if self.direction == "TB":
            return (origin[0] + along, origin[1] + across)
        return (origin[0] + across, origin[1] + along)

    def _box_span(self, item: int) -> tuple[float, float]:
        rank = self.rank[item]
        middle = (self.rank_start[rank] + self.rank_end[rank]) / 2
        return middle - self.rsize[item] / 2, middle + self.rsize[item] / 2

    def _ports(self) -> dict[tuple[int, int], float]:
        """Where each hop leaves or enters a box: spread along the box's side, in order."""
        ports: dict[tuple[int, int], float] = {}
        for item in range(self.real):
            for side in (self.down[item], self.up[item]):
                others = sorted(side, key=lambda o: (self.x[o], o))
                count = len(others)
                step = 0.0
                if count > 1:
                    step = min(self.spacing.port_gap, 0.8 * self.osize[item] / (count - 1))
                for i, other in enumerate(others):
                    ports[item, other] = self.x[item] + (i - (count - 1) / 2) * step
        return ports

    def result(self, origin: Point) -> Layout:
        """Boxes and routes in x/y coordinates."""
        out = Layout()
        for item in range(self.real):
            start, _ = self._box_span(item)
            left = self.x[item] - self.osize[item] / 2
            x, y = self._point(origin, left, start)
            w, h = (self.osize[item], self.rsize[item])
            if self.direction == "LR":
                w, h = h, w
            out.boxes[self.keys[item]] = Box(self.keys[item], x, y, w, h, self.rank[item])
        ports = self._ports()
        for source, target, chain in self.chains:
            out.routes.append(self._route(source, target, chain, ports, origin))
        out.orders = [[self.keys[i] for i in layer if i < self.real] for layer in self.layers]
        extent = max((self.x[i] + self.osize[i] / 2 for i in range(len(self.x))), default=0.0)
        depth = self.rank_end[-1]
        out.width, out.height = (extent, depth) if self.direction == "TB" else (depth, extent)
        return out

    def _route(
        self,
        source: int,
        target: int,
        chain: list[int],
        ports: dict[tuple[int, int], float],
        origin: Point,
    ) -> Route:
        def at(along: float, across: float) -> Point:
            return self._point(origin, along, across)

        lines: list[tuple[Point, Point]] = []
        beziers: list[tuple[Point, Point, Point, Point]] = []
        commands: list[str] = []
        along = ports[chain[0], chain[1]]
        across = self._box_span(chain[0])[1]
        start = here = at(along, across)
        commands.append(f"M{_xy(here)}")

        def line_to(point: Point) -> None:
            nonlocal here
            if point != here:
                lines.append((here, point))
                commands.append(f"L{_xy(point)}")
                here = point

        for a, b in pairwise(chain):
            rank_a, rank_b = self.rank[a], self.rank[b]
            if self.is_dummy(a):
                along = self.x[a]
            line_to(at(along, self.rank_end[rank_a]))
            to_along = self.x[b] if self.is_dummy(b) else ports[b, a]
            entry = self.rank_start[rank_b]
            middle = (self.rank_end[rank_a] + entry) / 2
            curve = (here, at(along, middle), at(to_along, middle), at(to_along, entry))
            beziers.append(curve)
            commands.append("C" + " ".join(_xy(p) for p in curve[1:]))
            here = curve[3]
            along = to_along
            if not self.is_dummy(b):
                line_to(at(along, self._box_span(b)[0]))
        return Route(source, target, " ".join(commands), start, here, tuple(beziers), tuple(lines))


def _xy(point: Point) -> str:
    return f"{num(point[0])},{num(point[1])}"


def _inversions(values: list[int], size: int) -> int:
    """How many pairs of ``values`` are out of order (a Fenwick tree, O(n log n))."""
    tree = [0] * (size + 1)
    count = 0
    for seen, value in enumerate(values):
        i = value + 1
        not_greater = 0
        while i > 0:
            not_greater += tree[i]
            i -= i & -i
        count += seen - not_greater
        i = value + 1
        while i <= size:
            tree[i] += 1
            i += i & -i
    return count


def _fill_gaps(targets: list[float | None], fallback: list[float]) -> list[float]:
    """Targets for items that have none: the nearest known target on their left (the first
    one for those before it), so that items without edges pack next to the others."""
    first = next((t for t in targets if t is not None), None)
    if first is None:
        return fallback
    filled: list[float] = []
    last = first
    for target in targets:
        last = last if target is None else target
        filled.append(last)
    return filled


def _isotonic(values: list[float], weights: list[float]) -> list[float]:
    """The non-decreasing sequence closest to ``values`` in weighted least squares (PAVA)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for value, weight in zip(values, weights, strict=True):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean2, weight2, count2 = blocks.pop()
            mean1, weight1, count1 = blocks.pop()
            total = weight1 + weight2
            blocks.append([(mean1 * weight1 + mean2 * weight2) / total, total, count1 + count2])
    out: list[float] = []
    for mean, _, count in blocks:
        out.extend([mean] * int(count))
    return out
