"""``message(n)``: the n-th of a run of distinct Messages (key ``k-n``, its own payload
and time), for the tests of what carries messages to the store (the webhook client, its
HTTP hop, the benchmarks' stand-ins). The store's own builders are in store.py.
"""
from mqttd.store.sink import Message


def message(n, client_id="dev-1", qos=1):
    return Message(f"k-{n}", client_id, "user", "t/1", b"\x00payload-%d" % n, qos, False, 100.0 + n)
