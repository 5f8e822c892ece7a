"""``python -m mqttd.manage accounts|tokens|bans|report|manhole ...``: the ``mqttd`` script."""
import sys

from mqttd.manage.cli import main

sys.exit(main())
