"""Reading a running mqttd's figures as Prometheus does: ``scrape(url)`` of its /metrics
(``BrokerProcess.metrics_url``), parsed back with prometheus_client's own parser, and its
/healthz.

Series are keyed as Prometheus writes them, labels sorted: counters carry ``_total``::

    samples = scrape(broker.metrics_url)
    samples[series("edge_gate_refused_total", reason="bad token")]
    samples.get(series("gate_token_lookups_total"), 0)
"""
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.support.common import DEFAULT_TIMEOUT

__all__ = ["health", "health_url", "scrape", "scrape_families", "series", "sum_of",
           "wait_for_series"]


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def series(name, **labels):
    """The key of one series in ``scrape``'s answer: ``name{a="x",b="y"}`` (sorted)."""
    if not labels:
        return name
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def sum_of(samples, name):
    """The sum of every series of ``name`` in ``scrape``'s answer, whatever its labels."""
    return sum(value for key, value in samples.items()
               if key == name or key.startswith(name + "{"))


def _get(url, timeout):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.headers, response.read().decode("utf-8")


def scrape_families(url, timeout=DEFAULT_TIMEOUT):
    """The metric families at ``url``, as prometheus_client's parser reads them."""
    _, _, text = _get(url, timeout)
    return list(text_string_to_metric_families(text))


def scrape(url, timeout=DEFAULT_TIMEOUT):
    """{series key (see ``series``): value} of every sample at ``url``."""
    return {series(sample.name, **sample.labels): sample.value
            for family in scrape_families(url, timeout) for sample in family.samples}


def health_url(metrics_url):
    """The /healthz beside a /metrics URL."""
    return metrics_url.rsplit("/", 1)[0] + "/healthz"


def health(metrics_url, timeout=DEFAULT_TIMEOUT):
    """(HTTP status, body) of the /healthz beside ``metrics_url``."""
    try:
        status, _, body = _get(health_url(metrics_url), timeout)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8")
    return status, body


def wait_for_series(url, predicate, timeout=DEFAULT_TIMEOUT, interval=0.2):
    """``scrape(url)`` once ``predicate(samples)`` holds (the children report every
    second); AssertionError with the last samples if it does not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if predicate(samples):
            return samples
        if time.monotonic() >= deadline:
            raise AssertionError(f"the figures at {url} never matched; last: {samples}")
        time.sleep(interval)
