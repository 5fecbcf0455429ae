"""edgecnn.export: checkpoint to self-describing ONNX/OpenVINO bundle, FP32 and INT8, with proof."""
