"""A blocking loopback server in a thread for the benchmark tools' tests: every accepted
socket is handed to ``answer(sock)``; no broker, a handful of connections."""
import socket
import threading


def serve(test, answer):
    """A listening socket on 127.0.0.1 whose thread calls ``answer(sock)`` per accept;
    its port. Stopped and closed by ``test``'s cleanup."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(128)
    stop = threading.Event()

    def loop():
        lsock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except socket.timeout:
                continue
            conn.settimeout(2)
            answer(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    test.addCleanup(lambda: (stop.set(), thread.join(), lsock.close()))
    return lsock.getsockname()[1]
