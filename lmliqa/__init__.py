"""lmliqa: train LML-IQA no-reference image quality models and ship them to devices.

Importing this package never imports torch: the runtime and the data tools work without it.
"""

__version__ = "0.1.0"
