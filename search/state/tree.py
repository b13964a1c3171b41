"""The search tree of partial states, on a networkx DiGraph.

Each node is a state reached from its parent by an *action* (one token for token-level search,
a step of several tokens for step-level search). Nodes carry whatever numbers the planner keeps
(``visits``, ``q``, ``prior``, ``reward``, ``value``...). The tree exports to JSON (for the API
and pictures) and DOT, and computes V-STAR's sibling-relative advantages.

>>> t = Tree()
>>> root = t.add_root(text="def f():")
>>> a = t.add_child(root, [1], " return 1", reward=1.0)
>>> b = t.add_child(root, [2], " return 0", reward=0.0)
>>> [round(r["advantage"], 3) for r in t.advantage_records()]
[1.0, -1.0]
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import networkx as nx

ADVANTAGE_EPS = 1e-6


class Tree:
    def __init__(self) -> None:
        self.g: nx.DiGraph = nx.DiGraph()
        self.root: int | None = None
        self._next = 0

    def __len__(self) -> int:
        return int(self.g.number_of_nodes())

    def add_root(self, action: list[int] | None = None, text: str = "", **attrs: Any) -> int:
        if self.root is not None:
            raise ValueError("the tree already has a root")
        self.root = self._add(action or [], text, depth=0, **attrs)
        return self.root

    def add_child(self, parent: int, action: list[int], text: str, **attrs: Any) -> int:
        node = self._add(action, text, depth=self.g.nodes[parent]["depth"] + 1, **attrs)
        self.g.add_edge(parent, node)
        return node

    def _add(self, action: list[int], text: str, **attrs: Any) -> int:
        node = self._next
        self._next += 1
        self.g.add_node(node, action=list(action), text=text, visits=0, **attrs)
        return node

    def __getitem__(self, node: int) -> dict[str, Any]:
        return self.g.nodes[node]  # type: ignore[no-any-return]

    def update(self, node: int, **attrs: Any) -> None:
        self.g.nodes[node].update(attrs)

    def children(self, node: int) -> list[int]:
        return list(self.g.successors(node))

    def parent(self, node: int) -> int | None:
        preds = list(self.g.predecessors(node))
        return preds[0] if preds else None

    def path(self, node: int) -> list[int]:
        """Nodes from the root to ``node``."""
        out = [node]
        while (p := self.parent(out[-1])) is not None:
            out.append(p)
        return out[::-1]

    def tokens(self, node: int) -> list[int]:
        """Concatenated actions from the root to ``node`` (the root's action included)."""
        toks: list[int] = []
        for n in self.path(node):
            toks.extend(self.g.nodes[n]["action"])
        return toks

    def text(self, node: int) -> str:
        return "".join(self.g.nodes[n]["text"] for n in self.path(node))

    def nodes(self) -> Iterator[int]:
        return iter(self.g.nodes)

    def mark_path(self, node: int, key: str = "chosen") -> None:
        for n in self.path(node):
            self.g.nodes[n][key] = True

    # ----- advantages -------------------------------------------------------------------------
    def advantage_records(self, value_key: str = "reward") -> list[dict[str, Any]]:
        """Sibling-relative advantages: (v_i - mean(siblings)) / (std(siblings) + eps) for every
        node with at least two children that carry ``value_key``; population std."""
        records = []
        for parent in self.g.nodes:
            kids = [c for c in self.children(parent) if self.g.nodes[c].get(value_key) is not None]
            if len(kids) < 2:
                continue
            values = [float(self.g.nodes[c][value_key]) for c in kids]
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
            prefix = self.text(parent)
            for child, v in zip(kids, values, strict=True):
                records.append(
                    {
                        "node": child,
                        "parent": parent,
                        "prefix": prefix,
                        "continuation": self.g.nodes[child]["text"],
                        "value": v,
                        "advantage": (v - mean) / (std + ADVANTAGE_EPS),
                    }
                )
        return records

    # ----- export -----------------------------------------------------------------------------
    def to_dict(self, max_nodes: int = 5000) -> dict[str, Any]:
        nodes = []
        for n in list(self.g.nodes)[:max_nodes]:
            attrs = {k: _jsonable(v) for k, v in self.g.nodes[n].items()}
            nodes.append({"id": n, "parent": self.parent(n), **attrs})
        return {"root": self.root, "nodes": nodes, "truncated": len(self) > max_nodes}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tree:
        tree = cls()
        for node in data["nodes"]:
            attrs = {k: v for k, v in node.items() if k not in ("id", "parent")}
            tree.g.add_node(node["id"], **attrs)
            if node["parent"] is not None:
                tree.g.add_edge(node["parent"], node["id"])
        tree.root = data.get("root")
        tree._next = max((n["id"] for n in data["nodes"]), default=-1) + 1
        return tree

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def to_dot(self) -> str:
        lines = ["digraph search {", '  node [shape=box, fontname="monospace"];']
        for n in self.g.nodes:
            a = self.g.nodes[n]
            label = repr(a.get("text", ""))[1:-1][:40].replace('"', '\\"')
            stats = " ".join(
                f"{k}={a[k]:.2f}" if isinstance(a[k], float) else f"{k}={a[k]}"
                for k in ("visits", "q", "reward", "value")
                if a.get(k) is not None
            )
            color = ", color=red, penwidth=2" if a.get("chosen") else ""
            lines.append(f'  n{n} [label="{label}\\n{stats}"{color}];')
        for u, v in self.g.edges:
            lines.append(f"  n{u} -> n{v};")
        lines.append("}")
        return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return None
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
