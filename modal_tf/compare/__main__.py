"""``python -m modal_tf.compare`` runs ``modal-tf compare``."""

import sys

from modal_tf.compare.command import main

sys.exit(main(sys.argv[1:]))
