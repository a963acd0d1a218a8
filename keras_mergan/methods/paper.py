"""The papers' hyper-parameters, written once.

The model classes take these as their defaults, and the `paper` preset
(`keras_mergan.run.presets`) gives them to a run; the `fast` and `short`
presets replace some of them for budgets far below the papers'.

- WGAN-GP's Adam: learning rate 1e-4, beta1 0 (beta2 0.9 in
  `keras_mergan.methods.optimizers.wgan_adam`).
- MeRGAN: 4000 iterations per task; replay alignment weighted 1e-3 on MNIST
  and 1e-2 on SVHN, both in the reference code's summed-L2 formulation
  (`"reference"` scalings for alignment and joint replay).
- EWC for GANs: lambda 1e9, the value the MeRGAN paper's EWC baseline used.
- Deep Generative Replay: a share of real data of 1 / (tasks seen).
- Lifelong Twin GANs: half real, half replayed.
"""

from keras_mergan.methods.mixing import BALANCED

ITERS_PER_TASK = 4000
LEARNING_RATE = 1e-4
BETA_1 = 0.0
LAMBDA_RA = 1e-3
LAMBDA_RA_SVHN = 1e-2
RA_SCALING = "reference"
REPLAY_SCALING = "reference"
LAMBDA_EWC = 1e9
DGR_MIXING_RATIO = BALANCED
LTGAN_MIXING_RATIO = 0.5
