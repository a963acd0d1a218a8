"""`benchmarks/jax_op_profile.py`: XLA op time grouped by kind and family."""

import json

import keras
import pytest
from helpers import load_benchmark


@pytest.fixture(scope="module")
def profile():
    return load_benchmark("jax_op_profile")


def _event(name, microseconds):
    return {"ph": "X", "name": name, "dur": microseconds}


@pytest.mark.backend_independent
def test_op_time_is_grouped_by_kind_and_family_per_iteration(profile):
    events = [
        _event("ynn_fusion.47", 6000),
        _event("ynn_fusion.68", 4000),
        _event("dot_general.3", 2000),
        _event("convert_bitcast_fusion.1", 3000),
        _event("slice_bitcast_fusion.9", 2000),
        _event("concatenate.131", 1000),
        _event("multiply_add_fusion.2", 2000),
        # The runtime's own events wrap the ops: not counted again.
        _event("ThunkExecutor::Execute", 50000),
        _event("$threading.py:988 _bootstrap", 50000),
        _event("SlinkyThreadPool::Await", 900),
        {"ph": "i", "name": "dot.1"},
    ]
    summary = profile.summarize(events, iterations=2)
    assert summary["op_ms_per_iteration"] == 10.0
    families = summary["families"]
    assert families["matmul"] == {"ms_per_iteration": 6.0, "share": 0.6}
    assert families["conversion"] == {"ms_per_iteration": 1.5, "share": 0.15}
    assert families["data movement"] == {"ms_per_iteration": 1.5, "share": 0.15}
    assert families["other"] == {"ms_per_iteration": 1.0, "share": 0.1}
    assert list(summary["kinds"])[0] == "ynn_fusion"
    assert summary["kinds"]["ynn_fusion"] == {
        "family": "matmul",
        "ms_per_iteration": 5.0,
        "share": 0.5,
        "ops_per_iteration": 1.0,
    }
    assert "ThunkExecutor::Execute" not in summary["kinds"]
    with pytest.raises(ValueError, match="no XLA op"):
        profile.summarize(events[-4:], iterations=1)


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "kind, family",
    [
        ("dot", "matmul"),
        ("add_convert_fusion", "conversion"),
        ("pad_slice_fusion", "data movement"),
        ("wrapped_pad", "data movement"),
        ("copy", "data movement"),
        ("add_maximum_fusion", "other"),
        ("wrapped_reduce-window", "other"),
    ],
)
def test_op_families(profile, kind, family):
    assert profile.op_family(kind) == family


@pytest.mark.backend_independent
def test_main_writes_the_table_and_the_record(profile, tmp_path, monkeypatch):
    def fake_profile(precision, args):
        ms = {"float32": 800.0, "bfloat16": 1200.0}[precision]
        # 40% of the op time in a matmul, 60% in a conversion, per iteration.
        per_iteration_us = ms * 1000 * args.iters
        events = [
            _event("ynn_fusion.1", 0.4 * per_iteration_us),
            _event("add_convert_fusion.2", 0.6 * per_iteration_us),
        ]
        return {
            "precision": precision,
            "iterations": args.iters,
            "s_per_iteration_traced": ms / 1000,
            **profile.summarize(events, args.iters),
        }

    monkeypatch.setattr(profile, "_profile", fake_profile)
    assert profile.main([f"--out={tmp_path}", "--iters=2"]) == 0
    record = json.loads((tmp_path / "jax_op_profile.json").read_text())
    assert [r["precision"] for r in record["results"]] == ["float32", "bfloat16"]
    text = (tmp_path / "jax_op_profile.md").read_text()
    assert "| float32 | 0.800 | 800 | 320 (40%) | 480 (60%) | 0 (0%) | 0 (0%) |" in text
    assert "| `add_convert_fusion` | conversion | 720.0 | 60.0% | 0.5 |" in text
    assert text.index("Longest kinds, float32") < text.index("Longest kinds, bfloat16")
    with pytest.raises(SystemExit):
        profile.main(["--precisions=float16"])


@pytest.mark.skipif(keras.config.backend() != "jax", reason="reads a JAX trace")
def test_a_real_trace_shows_its_matmul(profile, tmp_path):
    import jax
    import jax.numpy as jnp

    matmul = jax.jit(lambda a, b: jnp.tanh(a @ b))
    a = jnp.ones((256, 256))
    matmul(a, a).block_until_ready()
    with jax.profiler.trace(str(tmp_path)):
        for _ in range(3):
            matmul(a, a).block_until_ready()
    summary = profile.summarize(profile.read_trace(tmp_path), iterations=3)
    assert summary["families"]["matmul"]["ms_per_iteration"] > 0
    assert all(not kind.startswith("$") for kind in summary["kinds"])
