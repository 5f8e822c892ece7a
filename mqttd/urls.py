"""The webhook's URL as the URI the broker sends: checked at start, encoded once.

Config validation and the webhook client both use ``webhook_uri``, so a URL that passes
the config check is exactly one the client can send. It sits at the bottom of the import
graph, beside ``mqttd.errors``, so the config loader needs no tier to check a URL.
"""
import ipaddress

from hyperlink import EncodedURL


def webhook_uri(text):
    """``text`` (a URL or IRI) as a hyperlink URL in URI form; ValueError if it has none.

    hyperlink's ``to_uri()`` runs the host through IDNA, which refuses an IPv6 literal
    (``http://[::1]:8080/``) although HTTP clients take it as is; an IP host is kept
    and the rest encoded.
    """
    url = EncodedURL.from_text(text)
    try:
        ipaddress.ip_address(url.host)
    except ValueError:
        return url.to_uri()
    return url.replace(host="").to_uri().replace(host=url.host)
