"""`python -m keras_mergan`: the `keras-mergan` command."""

import sys

from keras_mergan.cli import main

sys.exit(main())
