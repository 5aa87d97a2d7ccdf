#!/usr/bin/env python3
"""Checks the crate's module dependencies: no import circle, and arrows point down only.

Reads every `crate::…`, `super::…` and `self::…` path in src/ (use lines and inline paths),
maps each to the module it names, and fails (exit 1) when
  - two modules reach each other (a circle), or
  - a module imports one of a higher layer (LAYERS below, lowest first).
Prints the edges with --edges.
"""
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# Lowest first. A module may import from its own layer (if acyclic) or any lower one.
LAYERS = [
    ["secret_text"],
    ["engine::quoting", "engine::time_format", "engine::key", "engine::selector",
     "engine::identity", "engine::dns_check", "engine::secret_doc", "engine::tags", "engine::spread"],
    ["engine::ports", "engine::error"],
    ["engine::read_cache", "engine::pacing"],
    ["engine::regions"],
    ["engine::retirement", "engine::plan", "engine::triage"],
    ["engine"],
    ["engine::rollback"],
    ["engine::rotation", "engine::operations"],
    ["engine::schedule"],
    ["notifications", "metrics", "logging", "panic_report", "work_queue"],
    ["adapters"],
    ["error", "config"],
    ["app", "testing"],
    ["handler"],
    ["assembly"],
    ["main", "bin", "lib"],
]


def module_of(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts == ["lib"] or parts == ["main"]:
        return parts[0]
    return "::".join(parts)


MODULES = {module_of(p) for p in SRC.rglob("*.rs")}


def resolve(current: str, path: str):
    """The module a path names, seen from module `current`."""
    parts = path.split("::")
    here = [] if current in ("lib", "main") or current.startswith("bin::") else current.split("::")
    if parts[0] == "crate":
        parts = parts[1:]
    elif parts[0] == "self":
        parts = here + parts[1:]
    elif parts[0] == "super":
        while parts and parts[0] == "super":
            parts, here = parts[1:], here[:-1]
        parts = here + parts
    else:
        return None
    # The longest prefix that is a module.
    for n in range(len(parts), 0, -1):
        name = "::".join(parts[:n])
        if name in MODULES:
            return name
    return None


def layer_of(module: str) -> int:
    best = None
    for rank, names in enumerate(LAYERS):
        for name in names:
            if module == name or module.startswith(name + "::"):
                if best is None or len(name) > best[1]:
                    best = (rank, len(name))
    if best is None:
        sys.exit(f"check_layers: module `{module}` has no layer; add it to LAYERS")
    return best[0]


PATH = re.compile(r"\b((?:crate|super|self)(?:::\w+)+)")
GROUP = re.compile(r"\buse\s+((?:crate|super|self)(?:::\w+)*)::\{([^;]*)\};", re.S)


def edges():
    found = set()
    for file in sorted(SRC.rglob("*.rs")):
        module = module_of(file)
        text = file.read_text()
        # Drop comments and `mod tests` blocks' uses stay: tests may not import upwards either.
        text = re.sub(r"//[^\n]*", "", text)
        paths = [m.group(1) for m in PATH.finditer(text)]
        for group in GROUP.finditer(text):
            prefix = group.group(1)
            for item in re.split(r"[,\s{}]+", group.group(2)):
                if item and item[0].islower() and item != "self":
                    paths.append(f"{prefix}::{item}")
                elif item:
                    # An item (type, function) of the module the prefix names.
                    paths.append(f"{prefix}::{item}" if "::" in prefix else f"{prefix}::_")
        for path in paths:
            target = resolve(module, path)
            if target and target != module:
                found.add((module, target))
    return found


def main():
    graph = {}
    for a, b in edges():
        # A parent declaring its children (`pub mod x`) is not an import; `use self::x` is.
        graph.setdefault(a, set()).add(b)
    failures = []
    for a, targets in sorted(graph.items()):
        for b in sorted(targets):
            if layer_of(b) > layer_of(a):
                failures.append(f"{a} imports {b}, a higher layer")
    # Circles: strongly connected components of size > 1.
    index, low, stack, on_stack, sccs = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                sccs.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    failures += [f"import circle: {' <-> '.join(c)}" for c in sccs]
    if "--edges" in sys.argv:
        for a, targets in sorted(graph.items()):
            print(f"{a} -> {', '.join(sorted(targets))}")
    if failures:
        print("check_layers: FAILED", *failures, sep="\n  ")
        sys.exit(1)
    count = sum(len(t) for t in graph.values())
    print(f"check_layers: {len(graph)} modules, {count} imports, no circle, arrows point down")


if __name__ == "__main__":
    main()
