"""In the tree, a socket the master admits and closes before its CONNECT is judged (no
CONNECT within broker.idle_timeout, a protocol error) is counted by reason on /metrics
and logged, not closed silently."""
from tests.integration.support.common import wait_for
from tests.integration.support.metrics import series, wait_for_series
from tests.integration.support.process import ANONYMOUS, requires_mqttd
from tests.integration.support.testcase import BrokerTestCase


@requires_mqttd("the master's counts of sockets closed before CONNECT")
class ClosedBeforeConnectTests(BrokerTestCase):
    config = ANONYMOUS + "[broker]\nidle_timeout = 1.0\n[server]\nworkers = 2\n"

    def test_a_silent_socket_and_a_bad_one_are_counted_and_logged(self):
        url = wait_for(lambda: self.broker.metrics_url, message="metrics URL",
                       context=self.context)
        silent = self.raw()
        bad = self.raw()
        bad.send(b"GET / HTTP/1.1\r\n\r\n")  # not MQTT
        bad.wait_closed(timeout=5)
        silent.wait_closed(timeout=5)
        wait_for_series(url, lambda s: (
            s.get(series("edge_connect_closed_total", reason="idle_timeout"), 0) >= 1
            and s.get(series("edge_connect_closed_total", reason="protocol_error"), 0) >= 1))
        wait_for(lambda: self.broker.output().count("before its CONNECT was judged") >= 2,
                 message="two log lines", context=self.context)
        self.assertRoundTrip()  # the others are served as before
