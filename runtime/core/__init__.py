"""The core floor: load a bundle, pick a backend and device, run it. Imports nothing from the other floors."""
