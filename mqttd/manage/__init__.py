"""The operator's side of the appliance: the ``mqttd`` command line (accounts, tokens,
bans, report, manhole), /metrics, /healthz and /report, the telnet manhole and its
helpers (``wiring`` puts them on a running master or single process)."""
