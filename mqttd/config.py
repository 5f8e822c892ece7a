"""TOML configuration into frozen, validated attrs sections.

Every key has a default here, so an empty file (or none) is a working embedded appliance.
Anything wrong stops start-up with one line naming the key path, e.g.
``broker.max_inflight: must be 1..65535, got 0``: an operator should never have to
guess which of their edits broke the service. Key names follow what operators already
know from EMQX and Mosquitto.

Sections live in ``mqttd.config_sections``, the rules across keys in ``mqttd.config_checks``;
this module reads TOML into them and is what every caller imports.
"""
import tomllib

import attrs

from mqttd.config_checks import MIN_INGEST_SECRET, check_cross, one_message_body
from mqttd.config_sections import (
    AuthConfig, BrokerConfig, ClusterConfig, Config, FlappingDetectConfig, IngestConfig, LimitsConfig,
    ManageConfig, ServerConfig, User, WebhookConfig,
)
from mqttd.errors import ConfigError

__all__ = ["AuthConfig", "BrokerConfig", "ClusterConfig", "Config", "ConfigError", "FlappingDetectConfig",
           "IngestConfig", "LimitsConfig", "MIN_INGEST_SECRET", "ManageConfig", "ServerConfig", "User",
           "WebhookConfig", "config_document", "load_config", "one_message_body", "parse_config"]

_SECTIONS = {f.name: f.type for f in attrs.fields(Config)}


def _type_name(kind):
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        kind, "a table"
    )


def _check_scalar(path, value, kind, low, high, choices=None):
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{path}: must be {_type_name(kind)}, got {value!r}")
    if low is not None and not (low <= value <= high):
        raise ConfigError(f"{path}: must be {low}..{high}, got {value!r}")
    if choices is not None and value not in choices:
        raise ConfigError(f"{path}: must be one of {', '.join(choices)}, got {value!r}")
    return value


def _build(cls, table, path):
    """Build section ``cls`` from a TOML table, checking every key against its field."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: must be a table, got {table!r}")
    fields = {f.name: f for f in attrs.fields(cls)}
    values = {}
    for key, value in table.items():
        where = f"{path}.{key}"
        field = fields.get(key)
        if field is None:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{where}: unknown key (known: {known})")
        meta = field.metadata
        kind = meta["kind"]
        if kind is dict:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: must be a table of strings, got {value!r}")
            value = tuple((name, _check_scalar(f"{where}.{name}", item, str, None, None))
                          for name, item in value.items())
        elif isinstance(kind, tuple):
            (item_kind,) = kind
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{where}: must be a list, got {value!r}")
            if attrs.has(item_kind):
                value = tuple(
                    _build(item_kind, item, f"{where}[{i}]") for i, item in enumerate(value)
                )
            else:
                value = tuple(
                    _check_scalar(f"{where}[{i}]", item, item_kind, None, None)
                    for i, item in enumerate(value)
                )
        else:
            value = _check_scalar(where, value, kind, meta["low"], meta["high"], meta["choices"])
        values[key] = value
    return cls(**values)



def parse_config(document, overrides=None):
    """Build a Config from a parsed TOML document plus command-line overrides.

    ``overrides`` maps "section.key" to an already-typed value (from the command line)
    and wins over the file.
    """
    if not isinstance(document, dict):
        raise ConfigError(f"config: must be a table, got {document!r}")
    sections = {}
    for name, table in document.items():
        cls = _SECTIONS.get(name)
        if cls is None:
            known = ", ".join(sorted(_SECTIONS))
            raise ConfigError(f"{name}: unknown section (known: {known})")
        sections[name] = table
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".", 1)
        table = sections.setdefault(section, {})
        if isinstance(table, dict):  # not a table: _build says so, with the section name
            sections[section] = dict(table, **{key: value})
    config = Config(**{name: _build(_SECTIONS[name], table, name) for name, table in sections.items()})
    webhook = sections.get("webhook")
    if not (isinstance(webhook, dict) and "max_body_size" in webhook):
        config = attrs.evolve(config, webhook=attrs.evolve(
            config.webhook, max_body_size=config.ingest.max_body_size))
    check_cross(config)
    return config


def config_document(config):
    """The TOML-shaped document that ``parse_config`` turns back into ``config``.

    How the master hands a child its exact configuration (as JSON on the child's stdin):
    the child validates it again, and never rereads a file that may have changed since.
    Secrets are in it; it goes only down a pipe to the appliance's own children.
    """
    document = {}
    for section in attrs.fields(Config):
        values = getattr(config, section.name)
        table = {}
        for field in attrs.fields(type(values)):
            value = getattr(values, field.name)
            kind = field.metadata["kind"]
            if kind is dict:
                value = dict(value)
            elif isinstance(kind, tuple):
                value = [attrs.asdict(item) if attrs.has(type(item)) else item for item in value]
            table[field.name] = value
        document[section.name] = table
    return document


def load_config(path=None, overrides=None):
    """Read the TOML file at ``path`` (None: defaults only) and validate it."""
    document = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                document = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: invalid TOML: {e}") from None
        except UnicodeDecodeError as e:  # TOML is UTF-8; a Latin-1 password, say
            raise ConfigError(f"{path}: not UTF-8 (byte {e.start}); TOML files are UTF-8") from None
    return parse_config(document, overrides)
