"""The package root's public API, the layers of the package, and plain-Keras loading."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TINY_CLI_RUN, wiring_test

import keras_mergan
from keras_mergan import cli

PUBLIC = (
    "RunConfig",
    "train_run",
    "prepare_run",
    "METHODS",
    "load_dataset",
    "load_task_model",
)
# The package's layers, lowest first: a layer may import only those before it.
LAYERS = (
    (
        "keras_mergan.logs",
        "keras_mergan.usage",
        "keras_mergan.run_folder",
        "keras_mergan.image_grid",
    ),
    ("keras_mergan.backend", "keras_mergan.data", "keras_mergan.layers"),
    ("keras_mergan.models",),
    ("keras_mergan.methods", "keras_mergan.sampling"),
    ("keras_mergan.evaluation", "keras_mergan.export"),
    ("keras_mergan.run",),
    ("keras_mergan.cli", "keras_mergan.serve"),
)
ROOT = Path(keras_mergan.__file__).parent


def _layer(module: str) -> int | None:
    for index, group in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in group):
            return index
    return None


def _imports(path: Path) -> set[str]:
    """Every keras_mergan module a file imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("keras_mergan.")}


def _package_files():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        yield path, ".".join(p for p in parts if p != "__init__")


@pytest.mark.backend_independent
def test_no_import_runs_against_the_layers():
    offences = []
    for path, module in _package_files():
        own = _layer(module)
        for target in _imports(path):
            layer = _layer(target)
            if own is not None and layer is not None and layer > own:
                offences.append(f"{module} (layer {own}) imports {target} ({layer})")
    assert offences == []
    # The check can fail: a run module imported by a method would be caught.
    assert _layer("keras_mergan.run.training") > _layer("keras_mergan.methods.ewc")


@pytest.mark.backend_independent
def test_version_from_the_cli_and_python_m(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"keras-mergan {keras_mergan.__version__}"
    done = subprocess.run(
        [sys.executable, "-m", "keras_mergan", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"keras-mergan {keras_mergan.__version__}"


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )


@wiring_test
@pytest.mark.parametrize("order", ["keras_mergan first", "keras first"])
def test_plain_keras_loads_a_saved_run_after_importing_the_package(tmp_path, order):
    run_dir = tmp_path / "run"
    cli.main([*TINY_CLI_RUN, "--method=jtr", "--tasks=0-1", f"--out={run_dir}"])
    imports = (
        "import keras_mergan, keras"
        if order == "keras_mergan first"
        else "import keras, keras_mergan"
    )
    done = _python(
        f"{imports}\n"
        f"gan = keras.saving.load_model({str(run_dir / 'task_02' / 'gan.keras')!r})\n"
        "print(type(gan).__name__)"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "JointTrainingWithReplay"


def _option_help(text: str, option: str) -> str:
    """The help of `option` in `--help` text joined into one line."""
    start = text.rindex(f" {option} ")  # the options listing, after the usage
    following = re.compile(r" --[a-z][a-z-]* ").search(text, start + len(option) + 2)
    return text[start : following.start() if following else None]


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "command, expected",
    [
        (
            "sample",
            {
                "--category CATEGORY": "(required unless --list)",
                "--out FILE": "(required unless --list)",
                "--task TASK": "(default: latest)",
                "--n N": "(default: 16)",
                "--seed SEED": "(default: 0)",
                "--scale SCALE": "(default: 1)",
                "--columns COLUMNS": "(default: a near-square grid)",
            },
        ),
        (
            "export",
            {
                "--python PYTHON": "(default: this one)",
                "--timeout TIMEOUT": "(default: no limit)",
            },
        ),
        ("serve", {"--port PORT": "(default 8000)"}),
    ],
)
def test_help_names_each_default_and_what_is_required(command, expected, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    shown = {option: _option_help(text, option) for option in expected}
    assert {o: d for o, d in expected.items() if d not in shown[o]} == {}
    if command == "sample":
        assert "EXPORT_DIR (--category CATEGORY --out FILE | --list)" in text
        assert "EXPORT_DIR a run's export directory" in text
