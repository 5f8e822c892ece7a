"""The operator's side of the appliance: the ``mqttd`` command line (accounts, tokens,
bans), and later the manhole and reports."""
