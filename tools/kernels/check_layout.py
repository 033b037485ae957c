#!/usr/bin/env python3
"""Check the layout contract of docs/kernels.md and the module arrows of the engine.

    tools/check_layout.sh               # check the repository (exit 1 listing every problem)
    tools/check_layout.sh --self-test   # check the checker on synthetic trees (with and without cycles)

1. For every kernel module NAME (`kernels/cuda/NAME.cu`; shared `*.cuh` headers are exempt):
   kernels/ptx/NAME.ptx (and kernels/ptx/NAME_sm90a.ptx when the .cu has a line `// arch: sm_90a`),
   kernels/reports/NAME.txt, engine/src/backends/cuda/NAME.rs, tests/kernels/NAME.rs (declared in
   tests/kernels/main.rs), benches/kernels/NAME.rs (declared in benches/kernels/main.rs), a row
   `NAME` in the catalogue table of docs/kernels.md, and engine/src/backends/cpu/NAME.rs unless
   docs/kernels.md lists NAME (with a reason) between the `no-cpu-reference` markers, in which case
   that file must not exist. No PTX or report without its .cu.
2. No module import cycle among the modules of engine/src/backends/cuda, nor among the top-level
   modules of engine/src. Edges come from `use` trees and inline paths (`crate::a::b`, `super::x`,
   `self::x`), comments and string literals stripped, inline `mod name { .. }` blocks (tests)
   accounted for, and names re-exported by a parent `mod.rs` / `lib.rs` resolved to the module
   that defines them.

Plain Python 3 (no cargo): fast enough to run first in tools/test.sh.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"

# ------------------------------------------------------------------------------------------------
# Rust source scanning
# ------------------------------------------------------------------------------------------------


def strip_comments_and_strings(src: str) -> str:
    """Blank out comments, string and char literals (keeping offsets and newlines)."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', src[i:]) and (i == 0 or not re.match(r"\w", src[i - 1])):
            hashes = re.match(r'r(#*)"', src[i:]).group(1)
            end = src.find('"' + hashes, i + 2 + len(hashes))
            j = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            j += 1
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif c == "'":
            # char literal ('a', '\n', '\u{..}') vs lifetime ('a)
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", src[i:])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def inline_mod_depth(code: str) -> list[tuple[int, int]]:
    """Spans (start, end) of inline `mod name { ... }` bodies (nested spans included)."""
    spans = []
    for m in re.finditer(r"\bmod\s+" + IDENT + r"\s*\{", code):
        depth, j = 1, m.end()
        while j < len(code) and depth:
            if code[j] == "{":
                depth += 1
            elif code[j] == "}":
                depth -= 1
            j += 1
        spans.append((m.end(), j))
    return spans


def expand_use_tree(tree: str) -> list[list[str]]:
    """`a::{b, c::{d, e}}` -> [[a, b], [a, c, d], [a, c, e]] (globs and `self` kept as segments)."""
    tree = re.sub(r"\s*(::|[{},])\s*", r"\1", tree.strip())
    out: list[list[str]] = []

    def walk(s: str, prefix: list[str]) -> None:
        # split top-level commas
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            parts.append(cur)
        for p in parts:
            p = re.sub(r"\s+as\s+" + IDENT + r"$", "", p.strip())  # `x as y` -> `x`
            if "{" in p:
                head, body = p.split("{", 1)
                body = body[: body.rfind("}")]
                segs = [x for x in head.split("::") if x]
                walk(body, prefix + segs)
            else:
                segs = [x for x in p.split("::") if x]
                if segs:
                    out.append(prefix + segs)

    walk(tree, [])
    return out


USE_RE = re.compile(r"\buse\s+([^;]+);")
PATH_RE = re.compile(r"(?<![\w:])((?:crate|super|self)(?:\s*::\s*" + IDENT + r")+)")


def referenced_paths(code: str) -> list[tuple[int, list[str]]]:
    """(offset, segments) of every `crate::`/`super::`/`self::` path in code."""
    refs = []
    use_spans = []
    for m in USE_RE.finditer(code):
        use_spans.append((m.start(), m.end()))
        for segs in expand_use_tree(m.group(1)):
            refs.append((m.start(), segs))
    for m in PATH_RE.finditer(code):
        if any(a <= m.start() < b for a, b in use_spans):
            continue
        refs.append((m.start(), [s.strip() for s in m.group(1).split("::")]))
    return refs


class Tree:
    """The modules of one directory scope: `scope_dir` holding `mod.rs`/`lib.rs` and its children."""

    def __init__(self, scope_dir: Path, crate_root: Path):
        self.dir = scope_dir
        self.crate_root = crate_root  # engine/src
        parent = scope_dir / "lib.rs" if (scope_dir / "lib.rs").exists() else scope_dir / "mod.rs"
        self.parent_file = parent
        self.modules: dict[str, list[Path]] = {}
        for p in sorted(scope_dir.iterdir()):
            if p.is_file() and p.suffix == ".rs" and p.name not in ("mod.rs", "lib.rs", "main.rs"):
                self.modules[p.stem] = [p]
            elif p.is_dir() and (p / "mod.rs").exists():
                self.modules[p.name] = sorted(p.rglob("*.rs"))
        # sibling `foo.rs` + `foo/` directory (2018-style)
        for name in list(self.modules):
            d = scope_dir / name
            if d.is_dir() and not (d / "mod.rs").exists():
                self.modules[name] += sorted(d.rglob("*.rs"))
        self.reexports = self._reexports()
        # path of the scope from the crate root, e.g. ["backends", "cuda"]
        self.scope_path = list(scope_dir.relative_to(crate_root).parts)

    def _reexports(self) -> dict[str, str]:
        """Names the parent file re-exports from a child: `pub use child::{A, B}` -> {A: child}."""
        out: dict[str, str] = {}
        if not self.parent_file.exists():
            return out
        code = strip_comments_and_strings(self.parent_file.read_text(encoding="utf-8"))
        for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", code):
            for segs in expand_use_tree(m.group(1)):
                segs = [s for s in segs if s != "self"]
                if segs and segs[0] in ("self",):
                    segs = segs[1:]
                if len(segs) >= 2 and segs[0] in self.modules:
                    out[segs[-1]] = segs[0]
        return out

    def module_of(self, path: Path) -> str:
        for name, files in self.modules.items():
            if path in files:
                return name
        raise KeyError(path)

    def resolve(self, file: Path, depth_in_file: int, segs: list[str]) -> str | None:
        """The sibling module a path from `file` lands in (None: outside the scope or itself)."""
        # absolute module path of `file` (as a list of segments from the crate root)
        rel = file.relative_to(self.crate_root)
        parts = list(rel.parts)
        stem = Path(parts[-1]).stem
        here = parts[:-1] + ([] if stem in ("mod", "lib") else [stem])
        here = here + ["<inline>"] * depth_in_file
        if segs[0] == "crate":
            target = segs[1:]
        else:
            cur = list(here)
            i = 0
            while i < len(segs) and segs[i] in ("super", "self"):
                if segs[i] == "super":
                    if not cur:
                        return None
                    cur = cur[:-1]
                i += 1
            target = cur + segs[i:]
        n = len(self.scope_path)
        if target[:n] != self.scope_path or len(target) <= n:
            return None
        name = target[n]
        if name in self.modules:
            return name
        return self.reexports.get(name)

    def edges(self) -> dict[str, set[str]]:
        graph: dict[str, set[str]] = {m: set() for m in self.modules}
        for name, files in self.modules.items():
            for f in files:
                code = strip_comments_and_strings(f.read_text(encoding="utf-8"))
                spans = inline_mod_depth(code)
                for off, segs in referenced_paths(code):
                    depth = sum(1 for a, b in spans if a <= off < b)
                    tgt = self.resolve(f, depth, segs)
                    if tgt is not None and tgt != name:
                        graph[name].add(tgt)
        return graph


def find_cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """Strongly connected components with more than one node (Tarjan): (members, one cycle)."""
    index, low, stack, on, sccs = {}, {}, [], set(), []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    cycles = []
    for comp in sccs:
        # one concrete cycle through the component, for the message
        members = set(comp)
        start = comp[0]
        path, seen, v = [start], {start}, start
        while True:
            nxt = sorted(w for w in graph[v] if w in members)
            back = [w for w in nxt if w == start]
            if back and len(path) > 1:
                path.append(start)
                break
            fresh = [w for w in nxt if w not in seen]
            if not fresh:
                path.append(nxt[0])
                break
            v = fresh[0]
            path.append(v)
            seen.add(v)
        cycles.append((comp, path))
    return cycles


def cycle_problems(root: Path) -> list[str]:
    problems = []
    src = root / "engine" / "src"
    for scope, what in ((src / "backends" / "cuda", "engine/src/backends/cuda"), (src, "engine/src")):
        if not scope.exists():
            problems.append(f"{what}: directory missing")
            continue
        graph = Tree(scope, src).edges()
        for comp, cyc in find_cycles(graph):
            problems.append(
                f"{what}: module import cycle {' -> '.join(cyc)} among {{{', '.join(comp)}}} "
                f"(move what both need into a lower module so the arrows go one way)"
            )
    return problems


# ------------------------------------------------------------------------------------------------
# kernel layout
# ------------------------------------------------------------------------------------------------

NO_CPU_START = "<!-- no-cpu-reference -->"
NO_CPU_END = "<!-- /no-cpu-reference -->"


def doc_tables(doc: str) -> tuple[set[str], dict[str, str], list[str]]:
    """(catalogue row names, no-cpu-reference {name: reason}, problems) from docs/kernels.md."""
    problems = []
    rows: set[str] = set()
    m = re.search(r"^## Catalogue\s*$", doc, re.M)
    if not m:
        problems.append("docs/kernels.md: no `## Catalogue` section")
    else:
        lines = doc[m.end():].splitlines()
        while lines and not lines[0].lstrip().startswith("|"):
            lines.pop(0)
        table = []
        for line in lines:
            if not line.lstrip().startswith("|"):
                break
            table.append(line.strip())
        if len(table) < 3:
            problems.append("docs/kernels.md: no table under `## Catalogue`")
        for line in table[2:]:  # header and separator rows first
            cell = line.strip("|").split("|")[0].strip()
            rows.add(cell.strip("`"))
    no_cpu: dict[str, str] = {}
    a, b = doc.find(NO_CPU_START), doc.find(NO_CPU_END)
    if a < 0 or b < a:
        problems.append(f"docs/kernels.md: no list between {NO_CPU_START} and {NO_CPU_END}")
    else:
        for line in doc[a + len(NO_CPU_START): b].splitlines():
            lm = re.match(r"^\s*[-*]\s*`(\w+)`\s*(?:[:—–-]+)\s*(.*\S)?\s*$", line)
            if lm:
                if not lm.group(2):
                    problems.append(f"docs/kernels.md: `{lm.group(1)}` has no CPU reference but no reason")
                no_cpu[lm.group(1)] = lm.group(2) or ""
    return rows, no_cpu, problems


def declared_mods(main_rs: Path) -> set[str]:
    if not main_rs.exists():
        return set()
    code = strip_comments_and_strings(main_rs.read_text(encoding="utf-8"))
    return set(re.findall(r"^\s*(?:pub\s+)?mod\s+(" + IDENT + r")\s*;", code, re.M))


def layout_problems(root: Path) -> list[str]:
    problems = []
    cuda = root / "kernels" / "cuda"
    modules = sorted(p.stem for p in cuda.glob("*.cu"))
    if not modules:
        return [f"kernels/cuda: no .cu modules found under {cuda}"]
    doc_path = root / "docs" / "kernels.md"
    doc = doc_path.read_text(encoding="utf-8") if doc_path.exists() else ""
    rows, no_cpu, doc_problems = doc_tables(doc)
    problems += doc_problems
    test_mods = declared_mods(root / "tests" / "kernels" / "main.rs")
    bench_mods = declared_mods(root / "benches" / "kernels" / "main.rs")
    for name in modules:
        cu = (cuda / f"{name}.cu").read_text(encoding="utf-8")
        need = [f"kernels/ptx/{name}.ptx", f"kernels/reports/{name}.txt",
                f"engine/src/backends/cuda/{name}.rs", f"tests/kernels/{name}.rs",
                f"benches/kernels/{name}.rs"]
        if re.search(r"^//\s*arch:\s*sm_90a\s*$", cu, re.M):
            need.append(f"kernels/ptx/{name}_sm90a.ptx")
        for rel in need:
            p = root / rel
            alt = p.with_suffix("") / "mod.rs"
            if not p.exists() and not (rel.startswith("engine/") and alt.exists()):
                problems.append(f"{name}: missing {rel}")
        if name not in test_mods:
            problems.append(f"{name}: tests/kernels/main.rs does not declare `mod {name};`")
        if name not in bench_mods:
            problems.append(f"{name}: benches/kernels/main.rs does not declare `mod {name};`")
        if name not in rows:
            problems.append(f"{name}: no row `{name}` in the catalogue table of docs/kernels.md")
        cpu = root / "engine" / "src" / "backends" / "cpu" / f"{name}.rs"
        if name in no_cpu:
            if cpu.exists():
                problems.append(f"{name}: docs/kernels.md lists it without a CPU reference, "
                                f"but engine/src/backends/cpu/{name}.rs exists (drop it from the list)")
        elif not cpu.exists():
            problems.append(f"{name}: missing engine/src/backends/cpu/{name}.rs (or list `{name}` "
                            f"with a reason between the no-cpu-reference markers of docs/kernels.md)")
    for stale in sorted(set(no_cpu) - set(modules)):
        problems.append(f"docs/kernels.md: no-cpu-reference lists `{stale}`, which is no kernel module")
    for row in sorted(rows - set(modules)):
        problems.append(f"docs/kernels.md: catalogue row `{row}` has no kernels/cuda/{row}.cu")
    for p in sorted((root / "kernels" / "ptx").glob("*.ptx")):
        stem = p.stem[: -len("_sm90a")] if p.stem.endswith("_sm90a") else p.stem
        if stem not in modules:
            problems.append(f"kernels/ptx/{p.name}: no kernels/cuda/{stem}.cu")
    for p in sorted((root / "kernels" / "reports").glob("*.txt")):
        if p.stem not in modules:
            problems.append(f"kernels/reports/{p.name}: no kernels/cuda/{p.stem}.cu")
    return problems


# ------------------------------------------------------------------------------------------------
# self-test
# ------------------------------------------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")


def self_test() -> int:
    failures = []

    def expect(cond: bool, what: str) -> None:
        if not cond:
            failures.append(what)

    base = {
        "engine/src/lib.rs": "pub mod backends;\npub mod graph;\npub mod planner;\n",
        "engine/src/backends/mod.rs": "pub mod cuda;\npub mod cpu;\n",
        "engine/src/backends/cpu/mod.rs": "pub mod softmax;\n",
        "engine/src/backends/cpu/softmax.rs": "",
        "engine/src/backends/cuda/mod.rs": (
            "mod backend;\nmod softmax;\nmod tensor;\npub use backend::CudaBackend;\n"
            "pub use tensor::{CudaTensor, DType as Dt};\n"),
        # `super::softmax` in the inline test module is tensor's own fn, not the sibling module
        "engine/src/backends/cuda/tensor.rs": (
            "pub struct CudaTensor;\npub fn softmax() {}\n#[cfg(test)]\nmod tests {\n"
            "    use super::softmax;\n    fn f() { super::softmax(); }\n}\n"),
        "engine/src/backends/cuda/softmax.rs": "use super::tensor::CudaTensor;\n// use super::backend::CudaBackend;\nconst S: &str = \"super::backend::X\";\n",
        "engine/src/backends/cuda/backend.rs": "use super::{softmax, tensor::{self, CudaTensor}};\npub struct CudaBackend;\n",
        "engine/src/graph/mod.rs": "use crate::backends::cuda::CudaBackend;\n",
        "engine/src/planner/mod.rs": "use crate::graph;\n",
        "kernels/cuda/softmax.cu": "// softmax\n",
        "kernels/cuda/mma.cuh": "",
        "kernels/ptx/softmax.ptx": "",
        "kernels/reports/softmax.txt": "",
        "tests/kernels/main.rs": "mod softmax;\n",
        "tests/kernels/softmax.rs": "",
        "benches/kernels/main.rs": "mod softmax;\n",
        "benches/kernels/softmax.rs": "",
        "docs/kernels.md": (
            "# Kernels\n\n" + NO_CPU_START + "\n" + NO_CPU_END + "\n\n## Catalogue\n\n"
            "| kernel | x |\n| --- | --- |\n| `softmax` | y |\n"),
    }
    with tempfile.TemporaryDirectory() as tmp:

        def tree(name: str, files: dict[str, str]) -> Path:
            """The synthetic tree `base` with `files` added or replaced, written under `name`."""
            root = Path(tmp) / name
            write(root, {**base, **files})
            return root

        root = tree("ok", {})
        got = cycle_problems(root) + layout_problems(root)
        expect(got == [], f"clean synthetic tree reports problems: {got}")
        # the inline test module's `super::super::softmax` resolves to cuda::softmax: a real edge
        g = Tree(root / "engine/src/backends/cuda", root / "engine/src").edges()
        expect(g["tensor"] == set(), f"inline-mod resolution: tensor -> {g['tensor']}")
        expect(g["softmax"] == {"tensor"}, f"comments/strings must not make edges: {g['softmax']}")

        # cycle through a name re-exported by mod.rs: softmax -> backend (via `super::CudaBackend`)
        got = cycle_problems(tree("cuda_cycle", {
            "engine/src/backends/cuda/tensor.rs": "pub struct CudaTensor;\n",
            "engine/src/backends/cuda/softmax.rs": "use super::{tensor::CudaTensor, CudaBackend};\n"}))
        expect(len(got) == 1 and "backend -> softmax -> backend" in got[0],
               f"re-exported cuda cycle not found: {got}")

        # top-level cycle through an inline path (no `use`) in a nested file: planner <-> graph
        got = cycle_problems(tree("top_cycle", {
            "engine/src/graph/trace.rs": "fn f() { let x = crate::planner::floor(1.0); }\n",
            "engine/src/graph/mod.rs": "mod trace;\n"}))
        expect(len(got) == 1 and "graph -> planner -> graph" in got[0],
               f"top-level cycle not found: {got}")

        # a three-module cycle through a grouped `use crate::{..}`
        got = cycle_problems(tree("three", {
            "engine/src/backends/mod.rs": "pub mod cuda;\npub mod cpu;\nuse crate::{planner::Plan};\n"}))
        expect(len(got) == 1 and set(got[0].split("cycle ")[1].split(" among")[0].split(" -> "))
               == {"backends", "graph", "planner"}, f"three-module cycle not found: {got}")

        # missing pieces of the layout contract
        got = layout_problems(tree("layout", {"kernels/cuda/pool.cu": "// arch: sm_90a\n",
                                              "kernels/ptx/orphan.ptx": ""}))
        for piece in ("kernels/ptx/pool.ptx", "kernels/ptx/pool_sm90a.ptx",
                      "kernels/reports/pool.txt", "engine/src/backends/cuda/pool.rs",
                      "tests/kernels/pool.rs", "benches/kernels/pool.rs",
                      "engine/src/backends/cpu/pool.rs", "`mod pool;`", "no row `pool`",
                      "orphan.ptx"):
            expect(any(piece in p for p in got), f"layout problem `{piece}` not reported: {got}")
        # a module listed without a CPU reference needs no cpu file, and must not have one
        doc = base["docs/kernels.md"].replace(
            NO_CPU_START, NO_CPU_START + "\n- `softmax` — composed on the CPU")
        got = layout_problems(tree("nocpu", {"docs/kernels.md": doc}))
        expect(len(got) == 1 and "drop it from the list" in got[0], f"no-cpu contradiction: {got}")
    if failures:
        for f in failures:
            print(f"check_layout self-test: FAIL: {f}", file=sys.stderr)
        return 1
    print("check_layout self-test: ok (clean tree, re-exported cycle, nested top-level cycle, "
          "three-module cycle, missing layout pieces, no-cpu contradiction)")
    return 0


def main(argv: list[str]) -> int:
    if "--self-test" in argv:
        return self_test()
    root = Path(argv[argv.index("--root") + 1]) if "--root" in argv else ROOT
    problems = layout_problems(root) + cycle_problems(root)
    if problems:
        for p in problems:
            print(f"check_layout: {p}", file=sys.stderr)
        print(f"check_layout: {len(problems)} problem(s); the contract is at the top of "
              f"docs/kernels.md", file=sys.stderr)
        return 1
    print("check_layout: ok (kernel layout contract, no module cycles)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
