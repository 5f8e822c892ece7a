"""``PahoClient`` wraps a paho-mqtt 2.x client (MQTT 3.1.1, network loop in a thread)
and collects what it receives in thread-safe queues: what a real client library does.
"""
import queue
import socket
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.integration.support.common import DEFAULT_TIMEOUT, HOST, wait_for


class Message:
    """One PUBLISH as a subscriber received it."""

    __slots__ = ("topic", "payload", "qos", "retain", "dup")

    def __init__(self, topic, payload, qos, retain, dup=False):
        self.topic, self.payload, self.qos, self.retain, self.dup = topic, payload, qos, retain, dup

    def __repr__(self):
        return (f"Message({self.topic!r}, {self.payload[:40]!r}{'...' if len(self.payload) > 40 else ''}, "
                f"qos={self.qos}, retain={self.retain})")


class PahoClient:
    """A paho-mqtt 2.x client (MQTT 3.1.1) with its network loop in a thread.

    It never reconnects on its own (a test wants to see disconnections). Received
    messages go to ``self.messages`` (a queue of ``Message``).
    """

    def __init__(self, port, client_id="", clean_session=True, username=None, password=None,
                 will=None, keepalive=60, context=None):
        self.port = port
        self.client_id = client_id
        self.keepalive = keepalive
        self.context = context
        self.messages = queue.Queue()
        self.connacks = queue.Queue()
        self.disconnected = threading.Event()
        self.disconnect_reason = None
        self._suback = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos, retain)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_unsubscribe = self._on_unsubscribe
        self.client.on_disconnect = self._on_disconnect
        self._started = False

    def _ctx(self):
        return self.context() if self.context is not None else ""

    # callbacks run in paho's thread

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connacks.put((reason_code, flags.session_present))

    def _on_message(self, client, userdata, msg):
        self.messages.put(Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), bool(msg.dup)))

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties):
        with self._lock:
            self._suback[mid] = [rc.value for rc in reason_code_list]

    def _on_unsubscribe(self, client, userdata, mid, reason_code_list, properties):
        with self._lock:
            self._suback[("unsub", mid)] = True

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnect_reason = reason_code
        self.disconnected.set()

    # API used by tests

    def connect(self, timeout=DEFAULT_TIMEOUT, expect_success=True):
        """Connect and wait for CONNACK; returns (reason_code, session_present)."""
        self.client.connect(HOST, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        self._started = True
        try:
            reason_code, session_present = self.connacks.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id!r}: no CONNACK within {timeout}s\n{self._ctx()}") from None
        if expect_success and reason_code.is_failure:
            raise AssertionError(f"{self.client_id!r}: connection refused: {reason_code}\n{self._ctx()}")
        return reason_code, session_present

    def subscribe(self, topic, qos=0, timeout=DEFAULT_TIMEOUT):
        """Subscribe and wait for SUBACK; returns the granted QoS (or 0x80)."""
        result, mid = self.client.subscribe(topic, qos)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError(f"subscribe({topic!r}) failed locally: {mqtt.error_string(result)}")
        granted = wait_for(lambda: self._suback.get(mid), timeout, message=f"SUBACK for {topic!r}",
                           context=self.context)
        return granted[0]

    def unsubscribe(self, topic, timeout=DEFAULT_TIMEOUT):
        """Unsubscribe and wait for UNSUBACK."""
        result, mid = self.client.unsubscribe(topic)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError(f"unsubscribe({topic!r}) failed locally: {mqtt.error_string(result)}")
        wait_for(lambda: self._suback.get(("unsub", mid)), timeout, message=f"UNSUBACK for {topic!r}",
                 context=self.context)

    def publish(self, topic, payload, qos=0, retain=False, timeout=DEFAULT_TIMEOUT):
        """Publish and wait until the flow completes (sent; PUBACK; PUBCOMP)."""
        info = self.client.publish(topic, payload, qos, retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise AssertionError(
                f"publish to {topic!r} qos {qos} not acknowledged within {timeout}s\n{self._ctx()}")
        return info

    def publish_refused(self, topic, payload, qos=1, timeout=DEFAULT_TIMEOUT):
        """Publish a message the broker must refuse by closing the connection: wait for
        the close, then raise unless the message went unacknowledged. paho may mark the
        message failed (the close raced its own send) or just never published; both
        mean no PUBACK came."""
        info = self.client.publish(topic, payload, qos)
        self.wait_disconnected(timeout)
        if info.rc == mqtt.MQTT_ERR_SUCCESS and info.is_published():
            raise AssertionError(f"publish to {topic!r} was acknowledged\n{self._ctx()}")

    def get_message(self, timeout=DEFAULT_TIMEOUT):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id!r}: no message within {timeout}s\n{self._ctx()}") from None

    def get_messages(self, count, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        got = []
        while len(got) < count:
            remaining = deadline - time.monotonic()
            try:
                got.append(self.messages.get(timeout=max(remaining, 0.001)))
            except queue.Empty:
                raise AssertionError(
                    f"{self.client_id!r}: got {len(got)} of {count} messages within {timeout}s: "
                    f"{got[:5]}...\n{self._ctx()}") from None
        return got

    def no_message(self, timeout=0.3):
        """True if nothing arrives within ``timeout`` (otherwise AssertionError naming it)."""
        try:
            message = self.messages.get(timeout=timeout)
        except queue.Empty:
            return True
        raise AssertionError(f"{self.client_id!r}: unexpected message {message!r}")

    def wait_disconnected(self, timeout=DEFAULT_TIMEOUT):
        if not self.disconnected.wait(timeout):
            raise AssertionError(f"{self.client_id!r} was not disconnected within {timeout}s\n{self._ctx()}")

    def disconnect(self, timeout=DEFAULT_TIMEOUT):
        """Clean DISCONNECT, then stop the network thread."""
        self.client.disconnect()
        self.disconnected.wait(timeout)
        self._stop_loop()

    def kill_socket(self):
        """Drop the TCP connection without DISCONNECT (FIN, no MQTT goodbye)."""
        sock = self.client.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.disconnected.wait(DEFAULT_TIMEOUT)
        self._stop_loop()

    def _stop_loop(self):
        if self._started:
            self._started = False
            self.client.loop_stop()

    def close(self):
        """Cleanup: disconnect if still connected; never blocks for long."""
        try:
            if self._started and not self.disconnected.is_set():
                self.client.disconnect()
                self.disconnected.wait(2.0)
            self._stop_loop()
        finally:
            sock = self.client.socket()
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
