"""The edge agent: reads BLE medical devices, spools every reading, publishes over MQTT."""
