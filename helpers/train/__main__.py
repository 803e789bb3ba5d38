"""``python -m helpers.train config.json``: train from a JSON file of TrainConfig fields, alone or under
``accelerate launch`` / ``torchrun`` (README, "On your own machine")."""
import sys

from helpers.train.loop import main

sys.exit(main())
