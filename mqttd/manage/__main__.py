"""``python -m mqttd.manage accounts|tokens|bans ...``: the same as the ``mqttd`` script."""
import sys

from mqttd.manage.cli import main

sys.exit(main())
