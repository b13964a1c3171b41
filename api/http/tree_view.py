"""Pictures of a search tree: a tidy layout drawn as SVG (no graphviz needed), or an HTML page.

Layout: depth gives the row (y); leaves take consecutive columns left to right in child order
and a parent sits over the middle of its children (a "tidy tree"). Each node is a box with its
token text (newlines as ⏎) and its numbers (n = visits, q/v = value, r = reward, p = prior); its
fill shows the reward (red 0 -> green 1, grey when unknown); the chosen path (nodes with
``chosen: True``) has a thick blue border and blue edges. Hovering a node shows its full text.

Large trees are cut to ``max_nodes``: the chosen path first, then the most visited nodes, each
with its ancestors; a node with hidden children says how many.

>>> nodes = [{"id": 0, "parent": None, "text": "", "visits": 2},
...          {"id": 1, "parent": 0, "text": " return 1", "visits": 1, "reward": 1.0, "chosen": True}]
>>> svg = render_svg({"root": 0, "nodes": nodes})
>>> svg.startswith("<svg") and "return 1" in svg
True
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.core.contracts import SolveReport

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 170, 46, 14, 40, 20
TEXT_CHARS = 20
CHOSEN = "#1f6feb"


def tree_from_report(report: SolveReport) -> dict[str, Any]:
    """The report's search tree, or, for planners that keep none (greedy, sampling...), a
    two-level tree: the prompt and one child per candidate, the best one chosen."""
    tree = report.tree
    if tree and tree.get("nodes"):
        return dict(tree)
    best = report.best
    nodes: list[dict[str, Any]] = [
        {"id": 0, "parent": None, "text": "", "visits": 1, "depth": 0, "chosen": best is not None}
    ]
    for i, cand in enumerate(report.candidates, start=1):
        chosen = (
            best is not None
            and cand.completion == best.completion
            and not any(n.get("chosen") for n in nodes[1:])
        )
        nodes.append(
            {
                "id": i,
                "parent": 0,
                "text": cand.completion or "",
                "visits": 1,
                "depth": 1,
                "reward": cand.reward,
                "logprob": cand.logprob,
                "chosen": chosen,
            }
        )
    return {"root": 0, "nodes": nodes, "truncated": False, "synthesized": True}


def _select(nodes: dict[int, dict[str, Any]], root: int, max_nodes: int) -> set[int]:
    if len(nodes) <= max_nodes:
        return set(nodes)
    order = sorted(nodes.values(), key=lambda n: (not n.get("chosen"), -(n.get("visits") or 0), n["id"]))
    keep: set[int] = {root}
    for node in order:
        chain = []
        cur: int | None = node["id"]
        while cur is not None and cur not in keep and cur in nodes:
            chain.append(cur)
            cur = nodes[cur].get("parent")
        if len(keep) + len(chain) > max_nodes:
            continue
        keep.update(chain)
        if len(keep) >= max_nodes:
            break
    return keep


def layout(tree: dict[str, Any], max_nodes: int = 300) -> dict[str, Any]:
    """Positions (box centres) of the shown nodes, their edges and the picture's size."""
    nodes = {int(n["id"]): n for n in tree.get("nodes", [])}
    if not nodes:
        return {"nodes": [], "edges": [], "width": 2 * MARGIN, "height": 2 * MARGIN, "hidden": 0}
    root = tree.get("root")
    root = int(root) if root is not None and root in nodes else min(nodes)
    keep = _select(nodes, root, max_nodes)
    children: dict[int, list[int]] = {n: [] for n in keep}
    all_children: dict[int, int] = {}
    for n in sorted(nodes):
        parent = nodes[n].get("parent")
        if parent is not None:
            all_children[parent] = all_children.get(parent, 0) + 1
            if n in keep and parent in keep:
                children[parent].append(n)
    pos: dict[int, tuple[float, int]] = {}
    next_col = [0]

    def place(n: int, depth: int) -> float:  # iterative enough for search trees; recursion depth = tree depth
        kids = children[n]
        if not kids:
            x = float(next_col[0])
            next_col[0] += 1
        else:
            xs = [place(k, depth + 1) for k in kids]
            x = (xs[0] + xs[-1]) / 2
        pos[n] = (x, depth)
        return x

    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, len(keep) + 100))
    try:
        place(root, 0)
    finally:
        sys.setrecursionlimit(limit)
    out_nodes = []
    for n, (col, depth) in pos.items():
        node = nodes[n]
        out_nodes.append(
            {
                **node,
                "x": MARGIN + col * (BOX_W + GAP_X) + BOX_W / 2,
                "y": MARGIN + 30 + depth * (BOX_H + GAP_Y) + BOX_H / 2,
                "hidden_children": all_children.get(n, 0) - len(children[n]),
            }
        )
    edges = [(p, c) for p in children for c in children[p] if p in pos and c in pos]
    depth_max = max(d for _, d in pos.values())
    return {
        "nodes": out_nodes,
        "edges": edges,
        "hidden": len(nodes) - len(pos),
        "width": int(2 * MARGIN + next_col[0] * (BOX_W + GAP_X)),
        "height": int(2 * MARGIN + 30 + (depth_max + 1) * (BOX_H + GAP_Y)),
    }


def _shown_text(text: str, root: bool) -> str:
    if root and not text:
        return "(prompt)"
    shown = text.replace("\r", "").replace("\n", "⏎").replace("\t", "→")
    return shown if len(shown) <= TEXT_CHARS else shown[: TEXT_CHARS - 1] + "…"


def _stats(node: dict[str, Any]) -> str:
    parts = []
    for key, label in (("visits", "n"), ("q", "q"), ("value", "v"), ("reward", "r"), ("prior", "p")):
        v = node.get(key)
        if isinstance(v, bool) or v is None:
            continue
        parts.append(f"{label}={v:.2f}" if isinstance(v, float) else f"{label}={v}")
    return " ".join(parts)


def _fill(reward: Any) -> str:
    if not isinstance(reward, (int, float)) or isinstance(reward, bool):
        return "#f2f2f2"
    t = max(0.0, min(1.0, float(reward)))
    lo, hi = (248, 215, 218), (212, 237, 218)
    r, g, b = (round(a + (c - a) * t) for a, c in zip(lo, hi, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def render_svg(tree: dict[str, Any], title: str = "search tree", max_nodes: int = 300) -> str:
    lay = layout(tree, max_nodes)
    by_id = {n["id"]: n for n in lay["nodes"]}
    root = tree.get("root")
    w, h = max(lay["width"], 420), lay["height"]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'font-family="DejaVu Sans Mono, Menlo, monospace" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{MARGIN}" y="{MARGIN + 8}" font-size="14" font-weight="bold">{html.escape(title)}</text>',
        f'<text x="{MARGIN}" y="{MARGIN + 24}" fill="#555">{len(lay["nodes"])} nodes shown'
        + (f", {lay['hidden']} hidden" if lay["hidden"] else "")
        + " · n visits · q/v value · r reward · p prior · blue: chosen path · dashed: terminal</text>",
    ]
    for p, c in lay["edges"]:
        a, b = by_id[p], by_id[c]
        chosen = a.get("chosen") and b.get("chosen")
        y1, y2 = a["y"] + BOX_H / 2, b["y"] - BOX_H / 2
        mid = (y1 + y2) / 2
        parts.append(
            f'<path d="M{a["x"]:.1f},{y1:.1f} C{a["x"]:.1f},{mid:.1f} {b["x"]:.1f},{mid:.1f} '
            f'{b["x"]:.1f},{y2:.1f}" fill="none" stroke="{CHOSEN if chosen else "#999"}" '
            f'stroke-width="{3 if chosen else 1}"/>'
        )
    for n in lay["nodes"]:
        x0, y0 = n["x"] - BOX_W / 2, n["y"] - BOX_H / 2
        chosen = bool(n.get("chosen"))
        full = html.escape(str(n.get("text", "")))
        stats = _stats(n)
        tip = f"node {n['id']}: {full!s}" + (f"\n{stats}" if stats else "")
        label = html.escape(_shown_text(str(n.get("text", "")), n["id"] == root))
        more = f" +{n['hidden_children']}" if n.get("hidden_children") else ""
        stroke = f'stroke="{CHOSEN}" stroke-width="3"' if chosen else 'stroke="#666" stroke-width="1"'
        dash = ' stroke-dasharray="4 2"' if n.get("terminal") else ""
        parts.append(
            f'<g class="node{" chosen" if chosen else ""}" data-id="{n["id"]}"><title>{tip}</title>'
            f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{BOX_W}" height="{BOX_H}" rx="6" '
            f'fill="{_fill(n.get("reward"))}" {stroke}{dash}/>'
            f'<text x="{n["x"]:.1f}" y="{y0 + 18:.1f}" text-anchor="middle" xml:space="preserve">'
            f"{label}</text>"
            f'<text x="{n["x"]:.1f}" y="{y0 + 35:.1f}" text-anchor="middle" fill="#333" font-size="10">'
            f"{html.escape(stats + more)}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(tree: dict[str, Any], title: str = "search tree", max_nodes: int = 300) -> str:
    svg = render_svg(tree, title, max_nodes)
    chosen = [n for n in tree.get("nodes", []) if n.get("chosen")]
    chosen.sort(key=lambda n: n.get("depth", 0))
    path_text = html.escape("".join(str(n.get("text", "")) for n in chosen))
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:16px}}"
        "#tree{overflow:auto;border:1px solid #ddd}pre{background:#f6f8fa;padding:8px}"
        "g.node:hover rect{stroke:#000;stroke-width:2}</style></head><body>"
        f"<h2>{html.escape(title)}</h2><div id='tree'>{svg}</div>"
        f"<h3>chosen path</h3><pre>{path_text}</pre></body></html>"
    )
