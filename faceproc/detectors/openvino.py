"""SCRFD's inference on OpenVINO: compiled models behind the onnxruntime session interface insightface calls."""

from __future__ import annotations

import numpy as np

from .files import DetectorUnavailable


class OpenVinoSessions:
    """insightface's SCRFD asks for one session per input size; this gives it OpenVINO compiled models with
    the onnxruntime `run(names, feed)` call shape. At f32 the outputs equal onnxruntime's (to ~1e-5); bf16
    is about twice as fast on CPUs with bf16 units, with slightly different scores."""

    def __init__(self, precision: str = "auto", threads: int = 0, model_file: str | None = None):
        self.normalise = (127.5, 128.0)  # SCRFD's input mean and std (load_scrfd sets the model's own)
        try:
            import openvino as ov
        except ImportError:
            raise DetectorUnavailable("detector.scrfd.runtime = openvino needs the openvino package: "
                                      "pip install openvino, or set detector.scrfd.runtime = onnxruntime") from None
        self.core = ov.Core()
        # No CPU pinning: OpenVINO pins its threads to the first cores by default, so two worker processes
        # on one machine would share one core (each twice as slow; benchmarks/annotate.py parallel_scaling).
        self.config = {"PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
        self.source = None
        if precision == "int8":  # weights and activations int8 (bf16 where int8 has no kernel)
            from .quantize import quantized_detector

            self.source = quantized_detector(model_file)
        elif precision != "auto":
            self.config["INFERENCE_PRECISION_HINT"] = precision
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)

    def compiled(self, model_file: str):
        """One compiled model with a dynamic input size for every canvas: photos of many aspect ratios and
        sizes cost one compile per worker instead of one per canvas (each ~0.15 s and its own memory), at
        the same speed once a size has been seen (benchmarks: 180 vs 191 ms at 2048x1536)."""
        import openvino as ov

        if getattr(self, "_compiled", None) is None:
            from openvino.preprocess import PrePostProcessor

            model = self.core.read_model(model_file)
            model.reshape({model.inputs[0].any_name: ov.PartialShape([1, 3, -1, -1])})
            mean, std = self.normalise
            ppp = PrePostProcessor(model)  # uint8 RGB canvas (NHWC) in; normalised float NCHW inside
            ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
            ppp.input().model().set_layout(ov.Layout("NCHW"))
            ppp.input().preprocess().convert_element_type(ov.Type.f32).mean(float(mean)).scale(float(std))
            self._compiled = self.core.compile_model(ppp.build(), "CPU", self.config)
            # One infer request for every input size: alternating sizes cost no more than a request per size
            # (one-off check on the group photos), and each request keeps buffers for its last shape, so one
            # per size grows with every canvas a worker has seen (+1.2 GB after those photos' 69 sizes).
            self.request = self._compiled.create_infer_request()
        return self._compiled

    def __call__(self, model_file, input_size, reference_session):
        return _OpenVinoSession(self, self.source or model_file, input_size, reference_session)


class _OpenVinoSession:
    def __init__(self, owner: OpenVinoSessions, model_file: str, input_size, reference):
        w, h = input_size
        self.owner, self.compiled = owner, owner.compiled(model_file)
        self.reference, self.size = reference, (int(w), int(h))
        self.index = {o.any_name: i for i, o in enumerate(self.compiled.outputs)}
        for i, o in enumerate(self.compiled.outputs):
            for name in o.names:
                self.index[name] = i

    def get_inputs(self):  # the fixed shape insightface checks against the size it asked for
        from types import SimpleNamespace

        ref = self.reference.get_inputs()[0]
        return [SimpleNamespace(name=ref.name, shape=[1, 3, self.size[1], self.size[0]], type=ref.type)]

    def get_providers(self):  # what insightface compares with its main session's providers
        return self.reference.get_providers()

    def get_outputs(self):
        return self.reference.get_outputs()

    def run(self, output_names, feed):
        img = next(iter(feed.values())).transpose(0, 2, 3, 1)  # the uint8 NHWC canvas behind the view
        result = self.owner.request.infer({0: np.ascontiguousarray(img)})
        outs = [result[o] for o in self.compiled.outputs]
        names = output_names or [o.name for o in self.reference.get_outputs()]
        return [np.array(outs[self.index[n]]) for n in names]
