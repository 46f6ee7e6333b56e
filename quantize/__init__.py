"""lmliqa.quantize: post-training INT8 quantization per backend.

Not implemented yet: the quantization issue adds it on top of lmliqa.export.
"""
