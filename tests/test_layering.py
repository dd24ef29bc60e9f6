"""The package's layers import one way: method (the root modules) <- eval/ <- deploy/ <- study/ <- cli.

Every import counts, those inside functions too (ast.walk), so a lazy import cannot hide a cycle."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "tinydistil"
RANK = {"method": 0, "eval": 1, "deploy": 2, "study": 3, "cli": 4}


def layer(module: str) -> str:
    """'tinydistil.eval.glue' -> 'eval'; 'tinydistil.train' -> 'method'; 'tinydistil.cli' -> 'cli'."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("eval", "deploy", "study"):
        return parts[1]
    return "cli" if parts[1:2] in (["cli"], ["__main__"]) else "method"


def imports(path: Path) -> set[str]:
    """Absolute names of the tinydistil modules `path` imports."""
    here = ["tinydistil", *path.relative_to(PKG).with_suffix("").parts]
    pkg = here[:-1] if path.name != "__init__.py" else here[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = pkg[: len(pkg) - node.level + 1]
            mod = ".".join(base + ([node.module] if node.module else []))
            out |= {mod} if node.module else {f"{mod}.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tinydistil"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("tinydistil")}
    return {m for m in out if m != "tinydistil"}


def test_layers_import_one_way():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        mine = layer(".".join(["tinydistil", *path.relative_to(PKG).with_suffix("").parts]))
        if path == PKG / "__init__.py":
            continue  # the lazy top-level names (PEP 562) point into every layer on purpose
        for mod in imports(path):
            theirs = layer(mod)
            if RANK[theirs] > RANK[mine]:
                bad.append(f"{path.relative_to(PKG)} ({mine}) imports {mod} ({theirs})")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_the_layering_test_sees_imports():
    """An independent check that `imports` resolves relative imports at each depth (else the test above is void)."""
    assert "tinydistil.eval.finetune" in imports(PKG / "eval" / "glue.py")
    assert "tinydistil.hf" in imports(PKG / "eval" / "finetune.py")
    assert "tinydistil.study.ablation" in imports(PKG / "cli.py")
    assert layer("tinydistil.study.report") == "study" and layer("tinydistil.rundir") == "method"


def test_no_module_is_long():
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 420}
    assert not long, f"modules over ~400 lines: {long}"


def test_long_functions_say_why():
    """A function over ~60 lines says why it is one function (a comment `one function on purpose (...)`)."""
    long = []
    for p in PKG.rglob("*.py"):
        src = p.read_text()
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                body = "\n".join(src.splitlines()[node.lineno - 1:node.end_lineno])
                if "one function on purpose" not in body:
                    long.append(f"{p.relative_to(PKG)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, f"split these, or say why each is one function: {long}"
