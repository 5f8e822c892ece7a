"""A telnet client for the manhole: ``mqttd manhole`` and the tests drive it with this.

Debian 12 ships no telnet client by default and Python 3.13 has no telnetlib, so this is
the little of telnet the manhole needs: ``TelnetCodec`` (sans-I/O) splits what the
server sends into data and the answers its option requests want (it asks us to let it
echo, to tell our window size, to go character at a time: we agree to those and refuse
the rest, so its Deferred-waiting negotiation never hangs), and escapes what we send.
``ManholeClient`` logs in over a blocking socket and then either runs expressions one
by one (``run``: the text each printed, terminal escapes taken out; what the CLI's
``--eval`` and the tests use) or hands the socket to a terminal (``interact``).
"""
import os
import re
import select
import socket
import struct
import time

__all__ = ["LoginRefused", "ManholeClient", "ManholeError", "TelnetCodec", "connect",
           "plain_text"]

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
ECHO, SGA, NAWS, LINEMODE = 1, 3, 31, 34
_WE_DO = {SGA, NAWS, LINEMODE}  # options the server may ask us to DO
_IT_MAY = {ECHO, SGA}  # options the server may WILL

_ESCAPES = re.compile(rb"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[0-~])")
PROMPT = ">>> "
MORE = "... "  # the prompt of a statement that goes on


class ManholeError(Exception):
    """The manhole could not be reached, or said something this client cannot follow."""


class LoginRefused(ManholeError):
    """The manhole refused the user and password."""


def plain_text(data):
    """``data`` (bytes) without terminal escapes and carriage returns, as text."""
    return _ESCAPES.sub(b"", data).replace(b"\r", b"").decode("utf-8", "replace")


class TelnetCodec:
    """``feed(bytes)`` -> (application data, bytes to answer); ``escape(data)``."""

    def __init__(self, size=(80, 24)):
        self.size = size
        self._pending = b""
        self._sub = None  # bytes of a subnegotiation being read

    def naws(self):
        width, height = self.size
        body = struct.pack("!HH", width, height).replace(b"\xff", b"\xff\xff")
        return bytes((IAC, SB, NAWS)) + body + bytes((IAC, SE))

    def feed(self, data):
        data = self._pending + data
        self._pending = b""
        out, answers, i = bytearray(), bytearray(), 0
        while i < len(data):
            byte = data[i]
            if self._sub is not None:
                if byte == IAC:
                    if i + 1 >= len(data):
                        self._pending = data[i:]
                        break
                    if data[i + 1] == SE:
                        self._sub = None
                    i += 2
                    continue
                i += 1
                continue
            if byte != IAC:
                out.append(byte)
                i += 1
                continue
            if i + 1 >= len(data):
                self._pending = data[i:]
                break
            command = data[i + 1]
            if command == IAC:
                out.append(IAC)
                i += 2
            elif command in (DO, DONT, WILL, WONT):
                if i + 2 >= len(data):
                    self._pending = data[i:]
                    break
                answers += self._answer(command, data[i + 2])
                i += 3
            elif command == SB:
                self._sub = b""
                i += 2
            else:  # NOP, GA and the like
                i += 2
        return bytes(out), bytes(answers)

    def _answer(self, command, option):
        if command == DO:
            if option in _WE_DO:
                reply = bytes((IAC, WILL, option))
                return reply + self.naws() if option == NAWS else reply
            return bytes((IAC, WONT, option))
        if command == WILL:
            return bytes((IAC, DO if option in _IT_MAY else DONT, option))
        if command == WONT:
            return bytes((IAC, DONT, option))
        return bytes((IAC, WONT, option))  # DONT

    @staticmethod
    def escape(data):
        """``data`` as telnet sends it: IAC doubled, a bare CR (a terminal's Enter in
        raw mode) followed by NUL, as RFC 854 wants (the server holds a lone CR)."""
        data = data.replace(b"\xff", b"\xff\xff")
        return re.sub(rb"\r(?!\n)", b"\r\x00", data)


def connect(endpoint, timeout):
    """A socket connected to the manhole's ``endpoint``: ``(host, port)`` or a unix
    socket's path."""
    try:
        if isinstance(endpoint, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(endpoint)
            return sock
        return socket.create_connection(endpoint, timeout=timeout)
    except OSError as e:
        raise ManholeError(f"cannot connect to the manhole at {endpoint}: "
                           f"{e.strerror or e}") from None


class ManholeClient:
    """One session on ``sock``; ``login`` first."""

    def __init__(self, sock, timeout=30.0, size=(80, 24)):
        self.sock = sock
        self.timeout = timeout
        self.codec = TelnetCodec(size)
        self._seen = b""  # data received and not consumed yet

    def _read(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ManholeError(f"the manhole said nothing expected within {self.timeout:g} s")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise ManholeError(f"the manhole said nothing expected within "
                               f"{self.timeout:g} s") from None
        if not chunk:
            return False
        data, answers = self.codec.feed(chunk)
        if answers:
            self.sock.sendall(answers)
        self._seen += data
        return True

    def _until(self, done):
        """Read until ``done(plain text seen)`` gives an index; the text up to it."""
        deadline = time.monotonic() + self.timeout
        while True:
            text = plain_text(self._seen)
            end = done(text)
            if end is not None:
                self._seen = b""
                return text[:end]
            if not self._read(deadline):
                raise ManholeError(f"the manhole closed the connection; it said: "
                                   f"{text.strip()[-200:]!r}")

    def send(self, text):
        self.sock.sendall(self.codec.escape(text.encode("utf-8")))

    def login(self, user, password):
        """Log in; LoginRefused if the manhole says no."""
        self._until(lambda text: text.find("Username: ") + 10 if "Username: " in text else None)
        self.send(user + "\r\n")
        self._until(lambda text: text.find("Password: ") + 10 if "Password: " in text else None)
        self.send(password + "\r\n")
        said = self._until(lambda text: len(text) if text.endswith(PROMPT)
                           or "Authentication failed" in text else None)
        if "Authentication failed" in said:
            raise LoginRefused(f"the manhole refused user {user!r}")

    def run(self, source):
        """Run one line of Python at the prompt; the text it printed (its echo left
        out), once the prompt is back. ManholeError for a line that is not complete
        Python (the prompt asks for more: it is interrupted, and nothing ran)."""
        self.send(source.replace("\n", " ") + "\r\n")

        def done(text):
            start = text.find("\n")
            if start < 0:
                return None
            for prompt in (PROMPT, MORE):
                if text.endswith("\n" + prompt) or text[start + 1:] == prompt:
                    return len(text)
            return None
        text = self._until(done)
        if text.endswith(MORE):
            self.send("\x03")  # ^C: the manhole forgets the half-typed statement
            self._until(lambda seen: len(seen) if seen.endswith(PROMPT) else None)
            raise ManholeError(f"{source!r} is not a whole line of Python")
        return text[text.find("\n") + 1:-len(PROMPT)].rstrip("\n")

    def interact(self, stdin_fd, stdout):
        """Relay a terminal: bytes of ``stdin_fd`` to the manhole, its data to ``stdout``
        (a binary file), until either side closes."""
        if self._seen:
            stdout.write(self._seen)
            stdout.flush()
            self._seen = b""
        self.sock.settimeout(None)
        while True:
            readable, _, _ = select.select([self.sock, stdin_fd], [], [])
            if self.sock in readable:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                data, answers = self.codec.feed(chunk)
                if answers:
                    self.sock.sendall(answers)
                stdout.write(data)
                stdout.flush()
            if stdin_fd in readable:
                typed = os.read(stdin_fd, 1024)
                if not typed:
                    return
                self.sock.sendall(self.codec.escape(typed))

    def resized(self, size):
        """Tell the manhole the terminal's new size."""
        self.codec.size = size
        self.sock.sendall(self.codec.naws())

    def close(self):
        self.sock.close()
