"""Making a run: configuration, presets, training, callbacks and resume.

- `config`: `RunConfig`, every setting of a run as one typed value.
- `presets`: named sets of settings, kept as data.
- `training`: `train_run` and its parts (`prepare_run`: data, model, callbacks).
- `recorder`: `RunRecorder`, which writes each task's files.
- `callbacks`: the other callbacks a run's `model.fit` uses.
- `resume`: mid-task checkpoints and exact resume after a crash.
- `progress`, `tensorboard`: what a run shows while it trains.
- `optimizers`: each task's Adam with its learning-rate warm-up.

The run folder's file names live one layer down, in `keras_mergan.run_folder`,
which imports no ML framework so that serving can use it.
"""
