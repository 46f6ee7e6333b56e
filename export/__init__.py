"""lmliqa.export: checkpoint -> ONNX / OpenVINO / Core ML / TensorRT artifacts.

Not implemented yet: the export issue adds one module per format driven by one formats table.
"""
