"""The subgraphs of If, Loop and Scan nodes, and the outer tensors they read.

A subgraph reads tensors of the graphs around it by name, without listing them as node inputs:
silero-vad keeps every layer inside the branches of an If, and its op15 export reads the LSTM
weights (main-graph initialisers) from inside one. A stage that looks at node inputs alone sees
those weights as unused and drops them, or finds no layers at all; these helpers give every stage
the same view.
"""
from __future__ import annotations

from typing import Iterator

import onnx

__all__ = ["subgraphs", "walk", "outer_names", "used_names"]


def subgraphs(node: onnx.NodeProto) -> Iterator[tuple[str, onnx.GraphProto]]:
    """(attribute name, graph) for each subgraph attribute of ``node``."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.name, attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            for k, g in enumerate(attr.graphs):
                yield f"{attr.name}[{k}]", g


def walk(graph: onnx.GraphProto, scope: str = "") -> Iterator[tuple[onnx.GraphProto, str]]:
    """``graph`` and every graph nested in it, with a scope naming where (``""`` for ``graph``,
    ``If_0/then_branch`` for a branch of the node ``If_0``)."""
    yield graph, scope
    for i, node in enumerate(graph.node):
        for attr, sub in subgraphs(node):
            where = f"{node.name or node.op_type + '_' + str(i)}/{attr}"
            yield from walk(sub, f"{scope}/{where}" if scope else where)


def outer_names(node: onnx.NodeProto) -> set[str]:
    """Tensors that ``node``'s subgraphs read from the graphs around them."""
    out: set[str] = set()
    for _, sub in subgraphs(node):
        defined = {i.name for i in sub.input} | {t.name for t in sub.initializer}
        defined |= {t.name for t in sub.sparse_initializer if t.values.name}
        for n in sub.node:
            for name in list(n.input) + sorted(outer_names(n)):
                if name and name not in defined:
                    out.add(name)
            defined.update(o for o in n.output if o)
        out.update(o.name for o in sub.output if o.name not in defined)
    return out


def used_names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor ``graph`` reads: node inputs, what subgraphs read from it, and its outputs."""
    used = {o.name for o in graph.output}
    for n in graph.node:
        used.update(i for i in n.input if i)
        used |= outer_names(n)
    return used
