"""MQTT: availability, Home Assistant discovery, and inference requests through the broker."""
