"""The broker's end of a client's TCP connection, seen from /proc/net/tcp (no help from
the broker, so mosquitto's is seen the same way): which sockets it is, and whether the
broker has closed it yet."""
from tests.integration.support.common import DEFAULT_TIMEOUT, wait_for

__all__ = ["server_side_inodes", "wait_broker_closed"]


def _hex_address(host, port):
    packed = bytes(int(part) for part in host.split("."))
    return f"{int.from_bytes(packed, 'little'):08X}:{port:04X}"


def server_side_inodes(client_address):
    """The inodes of sockets whose peer is ``client_address`` (IPv4 (host, port)): the
    broker's end of that connection while a process holds it open (one it closed, in
    TIME_WAIT or FIN_WAIT, has inode 0)."""
    wanted = _hex_address(*client_address)
    with open("/proc/net/tcp") as f:
        next(f)
        return {fields[9] for fields in map(str.split, f)
                if fields[2] == wanted and fields[9] != "0"}


def wait_broker_closed(client_address, timeout=DEFAULT_TIMEOUT, context=None):
    """Wait until no process holds the broker's end of the connection from
    ``client_address`` (the broker has handled its end: a DISCONNECT, a close)."""
    wait_for(lambda: not server_side_inodes(client_address), timeout,
             message=f"the broker to close its end of {client_address}", context=context)
