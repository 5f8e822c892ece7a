"""`twistd mqttd`: the plugin only names the tap module, so twistd's plugin scan stays cheap."""
from twisted.application.service import ServiceMaker

mqttd = ServiceMaker(
    "mqttd",
    "mqttd.tap",
    "MQTT ingestion appliance: an ACK means the data is in the database",
    "mqttd",
)
