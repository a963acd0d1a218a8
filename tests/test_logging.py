"""The project's messages are records of the `keras_mergan` logger: `verbose`
and the program's logging settings govern them."""

import json
import subprocess
import sys
import textwrap

import keras
from helpers import TINY_RUN_CONFIG, wiring_test


@wiring_test
def test_verbose_and_the_programs_logging_settings_govern_the_messages(tmp_path):
    # No warm-up: one longer than the run would be warned of.
    quiet_config = {**TINY_RUN_CONFIG, "warmup_iterations": 0}
    # A fresh process: the logging settings are the program's own.
    script = f"""
        import contextlib, io, json, logging
        from keras_mergan import RunConfig, prepare_run

        config = RunConfig(**{quiet_config!r})

        def shown(folder, **options):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                prepare_run(config, {str(tmp_path)!r} + "/" + folder, **options)
            return out.getvalue()

        seen = {{"no settings": shown("a"), "verbose 0": shown("b", verbose=0)}}
        logging.getLogger("keras_mergan").setLevel(logging.WARNING)
        seen["warnings only"] = shown("c")
        logging.getLogger("keras_mergan").setLevel(logging.INFO)
        records = io.StringIO()
        logging.basicConfig(stream=records, format="%(name)s | %(message)s")
        seen["configured"] = shown("d")
        seen["records"] = records.getvalue()
        print(json.dumps(seen))
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    header = "Training jtr (short preset) on digits: 2 tasks x 1 iterations, "
    header += f"backend {keras.config.backend()} in float32, writing to {tmp_path}/"
    # Without logging settings, plain lines on stdout.
    assert seen["no settings"] == header + "a\n"
    assert seen["verbose 0"] == seen["warnings only"] == seen["configured"] == ""
    # A program's handler receives them, formatted its way, and alone.
    assert seen["records"] == f"keras_mergan.run.training | {header}d\n"
