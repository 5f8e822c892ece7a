"""``mosquitto_pub`` / ``MosquittoSub`` run Debian's command-line clients, the clients
users reach for first.
"""
import subprocess
import threading

from tests.integration.support.common import DEFAULT_TIMEOUT, HOST, STDBUF, STOP_TIMEOUT

MOSQUITTO_PUB = "/usr/bin/mosquitto_pub"
MOSQUITTO_SUB = "/usr/bin/mosquitto_sub"


def mosquitto_pub(port, topic, message, qos=0, retain=False, client_id=None, extra=(), timeout=10.0):
    """Run mosquitto_pub once; returns CompletedProcess (raises AssertionError on failure)."""
    args = [MOSQUITTO_PUB, "-h", HOST, "-p", str(port), "-V", "mqttv311", "-t", topic,
            "-m", message, "-q", str(qos)]
    if retain:
        args.append("-r")
    if client_id:
        args += ["-i", client_id]
    args += list(extra)
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"mosquitto_pub did not finish within {timeout}s: {e}") from None
    if result.returncode != 0:
        raise AssertionError(
            f"mosquitto_pub exited {result.returncode}: {result.stdout}{result.stderr}")
    return result


class MosquittoSub:
    """mosquitto_sub -C COUNT -W TIMEOUT in the background, ready once its SUBACK arrived.

    Each received message is printed as ``MSG|qos|retain|topic|hexpayload``; debug lines
    (-d) tell when the subscription is in place.
    """

    PREFIX = "MSG|"

    def __init__(self, port, topic, qos=0, count=1, wait=5, client_id=None, extra=()):
        # stdbuf: mosquitto_sub's stdout is a pipe; its debug lines must arrive as written.
        args = [STDBUF, "-oL", MOSQUITTO_SUB, "-h", HOST, "-p", str(port), "-V", "mqttv311", "-t", topic,
                "-q", str(qos), "-C", str(count), "-W", str(wait), "-d",
                "-F", self.PREFIX + "%q|%r|%t|%x"]
        if client_id:
            args += ["-i", client_id]
        args += list(extra)
        self.timeout = wait + 5
        self.lines = []
        self.subscribed = threading.Event()
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if "received SUBACK" in line:
                self.subscribed.set()

    def wait_subscribed(self, timeout=DEFAULT_TIMEOUT):
        if not self.subscribed.wait(timeout):
            self.kill()
            raise AssertionError(f"mosquitto_sub not subscribed within {timeout}s: {self.lines}")

    def result(self):
        """Wait for exit; returns (returncode, [(qos, retain, topic, payload bytes)])."""
        try:
            rc = self.process.wait(self.timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"mosquitto_sub did not exit within {self.timeout}s: {self.lines}") from None
        self._reader.join(2)
        messages = []
        for line in self.lines:
            if line.startswith(self.PREFIX):
                qos, retain, topic, hexpayload = line[len(self.PREFIX):].split("|", 3)
                messages.append((int(qos), int(retain), topic, bytes.fromhex(hexpayload)))
        return rc, messages

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
