"""The layout a reader relies on: the top level reads as the product (the scripts users run and the original
suite's modules), the internals live in style_transfer/, imports go one way (scripts -> style_transfer -> the
three base modules), and no model file or checkpoint names a module of ours, so moving one never breaks loading."""

import ast
import subprocess
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, train_args

SCRIPTS = {"train.py", "distillation.py", "render_image.py", "render_video.py", "evaluate_video.py",
           "export.py", "sweep.py"}
BASE_MODULES = {"transformer_net.py", "vgg.py", "utils.py"}
TOP_LEVEL = SCRIPTS | BASE_MODULES | {
    "run_training.sh", "render_image.sh", "render_video.sh", "run_tests.sh",
    "environment.yml", "requirements.txt", "requirements-dev.txt", "pyproject.toml", "README.md",
    "docs", "models", "images", "tools", "benchmarks", "tests", "style_transfer", ".ci", ".gitignore"}
PACKAGE = ROOT / "style_transfer"


def tracked_top_level() -> set[str]:
    try:
        names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return {name.split("/")[0] for name in names.splitlines() if (ROOT / name).exists()}


def imported_modules(path: Path) -> set[str]:
    """The top-level names of every module `path` imports (absolute imports only: the suite uses no others)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            names.add(node.module.split(".")[0])
    return names


OURS = {Path(name).stem for name in SCRIPTS | BASE_MODULES} | {"style_transfer"}


def test_the_top_level_holds_only_the_product():
    tracked = tracked_top_level()
    assert tracked <= TOP_LEVEL, sorted(tracked - TOP_LEVEL)
    assert {"train.py", "distillation.py", "render_image.py", "render_video.py", "style_transfer"} <= tracked


def test_every_internal_module_opens_with_a_docstring():
    for path in sorted(PACKAGE.glob("*.py")):
        assert ast.get_docstring(ast.parse(path.read_text())), f"{path.name} has no opening docstring"


def test_imports_go_one_way():
    """style_transfer imports only itself and the base modules; the base modules import nothing of ours but each
    other; nothing but tests, tools and benchmarks imports a script."""
    scripts = {Path(name).stem for name in SCRIPTS}
    base = {Path(name).stem for name in BASE_MODULES}
    for path in sorted(PACKAGE.glob("*.py")):
        ours = imported_modules(path) & OURS
        assert ours <= base | {"style_transfer"}, f"style_transfer/{path.name} imports {sorted(ours - base)}"
    for name in sorted(BASE_MODULES):
        ours = imported_modules(ROOT / name) & OURS
        assert ours <= base - {Path(name).stem}, f"{name} imports {sorted(ours)}"
    drivers = {"sweep.py": {"train"}}  # sweep.py checks the flags it passes on with train.py's own parser
    for name in sorted(SCRIPTS):
        if (ROOT / name).exists():
            imported = imported_modules(ROOT / name) & scripts - drivers.get(name, set())
            assert not imported, f"{name} imports another script: {sorted(imported)}"


def pickled_globals(path: Path) -> set[str]:
    """The `module.name` of every global a torch.save file's pickle refers to."""
    import pickletools

    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    ops = list(pickletools.genops(data))
    found = set()
    for index, (op, arg, _) in enumerate(ops):
        if op.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            found.add(f"{ops[index - 2][1]}.{ops[index - 1][1]}")
    return found


def test_checkpoints_and_models_name_no_module_of_ours(tmp_path, dataset_dir, style_files):
    """Checkpoints and model files hold tensors, dicts, lists and strings only: no class or function of this
    suite is pickled, so a module moved or renamed cannot break files written before."""
    import train
    import utils

    utils.run_main(train.main, train_args(dataset_dir, tmp_path, style_files[:2], "--conditional", "--max-steps",
                                          "1", "--checkpoint-interval", "1"))
    files = [*tmp_path.glob("checkpoints/*.pth"), *tmp_path.glob("models/*.pth"), *(ROOT / "models").glob("*.pth")]
    assert len(files) >= 3
    for path in files:
        modules = {name.split(".")[0] for name in pickled_globals(path)}
        assert modules <= {"torch", "collections"}, f"{path.name}: {sorted(modules)}"
