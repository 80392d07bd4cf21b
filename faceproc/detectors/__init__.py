"""Face detectors: what every kind gives (base.py), which file a run uses (files.py: DetectorSpec), the kinds
(scrfd.py with openvino.py and quantize.py, yunet.py) and their one construction site (registry.py)."""
