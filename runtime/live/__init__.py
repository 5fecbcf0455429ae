"""The live floor: cameras, video sources, recording and the web page. Built on the core, nothing above it."""
