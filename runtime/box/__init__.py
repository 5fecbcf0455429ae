"""The edge box: a camera's answers become states and events (states.py), sent where people look (MQTT
with Home Assistant discovery, webhooks, Prometheus metrics, H.264 clips), and `edgecnn run` runs a box
of cameras from one TOML file. Stands on the live floor; the live floor never imports it."""
