"""What `pip install keras-mergan` puts on a user's path."""

from pathlib import Path

import pytest

tomllib = pytest.importorskip(
    "tomllib", reason="pyproject.toml is read with tomllib, new in Python 3.11"
)

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.backend_independent


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_installed():
    packages = set(_setuptools()["packages"])
    folders = {
        ".".join(init.parent.relative_to(ROOT / "keras_mergan").parts)
        for init in (ROOT / "keras_mergan").rglob("__init__.py")
    }
    expected = {("keras_mergan." + f).rstrip(".") for f in folders}
    expected |= {"keras_mergan.export", "keras_mergan.serve"}
    assert packages == expected


def test_export_and_serve_install_under_the_package_namespace():
    mapping = _setuptools()["package-dir"]
    assert mapping == {"keras_mergan.export": "export", "keras_mergan.serve": "serve"}
    import keras_mergan.export
    import keras_mergan.serve

    assert Path(keras_mergan.export.__file__).parent == ROOT / "export"
    assert Path(keras_mergan.serve.__file__).parent == ROOT / "serve"


def test_the_shipped_data_files_are_package_data():
    patterns = _setuptools()["package-data"]["keras_mergan"]
    shipped = {
        path.relative_to(ROOT / "keras_mergan")
        for pattern in patterns
        for path in (ROOT / "keras_mergan").glob(pattern)
    }
    on_disk = set((ROOT / "keras_mergan" / "datasets").iterdir())
    assert {ROOT / "keras_mergan" / p for p in shipped} == on_disk
    assert {p.suffix for p in shipped} == {".npz", ".keras"}


def test_the_grpc_protocol_ships_with_the_server():
    patterns = _setuptools()["package-data"]["keras_mergan.serve"]
    shipped = {path for pattern in patterns for path in (ROOT / "serve").glob(pattern)}
    assert shipped == {ROOT / "serve" / "grpc_predict_v2.proto"}
