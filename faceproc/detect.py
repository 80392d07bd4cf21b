"""InsightFace SCRFD detection: a few whole-image passes at different scales, merged by NMS.

One input size does not serve all photos: at 640 SCRFD finds no face in a headshot that fills the frame
(a small close-up pass does), and 40 px faces of a 12 MP photo vanish when it is shrunk to 640. So the
main pass grows with the photo: its scale puts faces of `smallest_face` original pixels at ~25 px, the
size SCRFD still finds reliably, so its cost follows what the user asks for instead of the photo's
resolution (a 2048 px photo is looked at on a 1280 canvas, not 2048: 2.5x fewer pixels, with the same
recall on the group photos of benchmarks/detect_options.py). SCRFD is fully convolutional, so a big
canvas is one run (measured 2.4x cheaper than 640 px tiles with overlap, and no faces cut at tile edges).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .config import DetectorConfig, resolve_detector_file, resolve_detector_pack, resolve_insightface_root

log = logging.getLogger(__name__)


@dataclass
class Detections:
    boxes: np.ndarray  # (N, 4) float32 x1 y1 x2 y2, pixels of the image given to detect()
    kps: np.ndarray  # (N, 5, 2) float32
    scores: np.ndarray  # (N,) float32

    def __len__(self) -> int:
        return len(self.scores)

    def scaled(self, factor: float) -> "Detections":
        return Detections(self.boxes * factor, self.kps * factor, self.scores)

    @staticmethod
    def empty() -> "Detections":
        return Detections(np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros(0, np.float32))


# Canvas shapes (long / short side) a pass may take: photos of any aspect share a few input sizes (one
# onnxruntime session each), with a little padding.
ASPECTS = (1.0, 4 / 3, 3 / 2, 16 / 9)
FACE_PX = 25  # where smallest_face lands on the main pass: SCRFD's smallest anchors are 16 px


def canvas(h: int, w: int, long: float, step: int = 32) -> tuple[int, int]:
    """(width, height) of a pass that sees the h x w image with its long side at `long` px: the long side
    rounded up to `step`, the short side from the widest listed aspect the image still fits at that scale."""
    L = int(np.ceil(long / step) * step)
    f = L / max(h, w)
    short = min(h, w) * f
    r = max(a for a in ASPECTS if L / a >= short - 0.5)  # 1.0 always fits
    S = min(L, max(32, int(np.ceil(L / r / 32) * 32)))
    return (L, S) if w >= h else (S, L)


class DetectorUnavailable(RuntimeError):
    """The SCRFD model file cannot be found or fetched; the message names the setting to use."""


_HOW = ("point detector.scrfd.root / $FACEPROC_INSIGHTFACE_ROOT at a folder holding models/<pack>/det_*.onnx, "
        "or detector.scrfd.model_file / $FACEPROC_DETECTOR_FILE at an SCRFD .onnx file")


def ensure_detector_file(cfg: DetectorConfig) -> str:
    """The SCRFD .onnx to load, checked (and downloaded at most once, under a lock) in the driver, before
    any worker starts: workers then never download, race or die one by one on a missing model."""
    import glob
    import os

    explicit = resolve_detector_file(cfg)
    if cfg.kind != "scrfd" and not explicit:
        raise DetectorUnavailable(f"detector kind {cfg.kind} needs its model file: set detector.{cfg.kind}.model_file or "
                                  f"$FACEPROC_DETECTOR_FILE")
    if explicit:
        path = os.path.abspath(os.path.expanduser(explicit))
        if not os.path.isfile(path):
            raise DetectorUnavailable(f"detector model file {path} does not exist: {_HOW}")
        return path
    root = os.path.abspath(os.path.expanduser(resolve_insightface_root(cfg)))
    pack = resolve_detector_pack(cfg)
    folder = os.path.join(root, "models", pack)

    def found():
        files = sorted(glob.glob(os.path.join(folder, "det_*.onnx")))
        return files[0] if files else None

    if path := found():
        return _verified(pack, path, downloaded=False)
    if os.path.isdir(folder) and os.listdir(folder):
        raise DetectorUnavailable(f"{folder} holds no det_*.onnx (an interrupted download?): remove the folder to "
                                  f"download it again, or {_HOW}")
    from .offline import download_forbidden
    if why := download_forbidden(f"detector model {pack}/det_*.onnx", folder, _HOW):
        raise DetectorUnavailable(why)
    import fcntl

    os.makedirs(os.path.join(root, "models"), exist_ok=True)
    with open(os.path.join(root, "models", f".{pack}.download.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one download per machine, however many runs start at once
        if not found():
            try:
                from insightface.utils.storage import download

                log.info("downloading InsightFace pack %s into %s (once)", pack, root)
                download("models", pack, root=root)
            except Exception as e:
                import shutil

                shutil.rmtree(folder, ignore_errors=True)  # never leave a half pack that looks present
                raise DetectorUnavailable(f"InsightFace pack {pack!r} is not under {root}/models and could not be "
                                          f"downloaded ({type(e).__name__}: {e}). Offline? {_HOW}") from None
    if not (path := found()):
        raise DetectorUnavailable(f"the downloaded pack {pack!r} in {folder} holds no det_*.onnx: {_HOW}")
    return _verified(pack, path, downloaded=True)


# SHA-256 of InsightFace's own detector files, per pack (checked against the files in ../shared, which are
# byte-identical to the packs'). A pack not listed is used as found, with its checksum logged.
KNOWN_SHA256 = {
    ("buffalo_m", "det_2.5g.onnx"): "041f73f47371333d1d17a6fee6c8ab4e6aecabefe398ff32cca4e2d5eaee0af9",
    ("buffalo_s", "det_500m.onnx"): "5e4447f50245bbd7966bd6c0fa52938c61474a04ec7def48753668a9d8b4ea3a",
}


def _verified(pack: str, path: str, downloaded: bool) -> str:
    """A corrupt or tampered detector must stop the run before any worker loads it."""
    import os
    import shutil

    from .model import file_sha256

    want = KNOWN_SHA256.get((pack, os.path.basename(path)))
    got = file_sha256(path)
    if want is None:
        log.info("detector %s sha256 %s (no reference checksum for pack %s)", path, got, pack)
        return path
    if got != want:
        folder = os.path.dirname(path)
        if downloaded:
            shutil.rmtree(folder, ignore_errors=True)  # never leave a bad pack that looks present
            raise DetectorUnavailable(f"the downloaded {pack!r} detector has sha256 {got}, expected {want}: the "
                                      f"download was corrupted or tampered with; nothing was kept, retry or {_HOW}")
        raise DetectorUnavailable(f"{path} has sha256 {got}, expected {want} for InsightFace's {pack!r}: the file is "
                                  f"corrupt or not the pack's; remove {folder} to download it again, or {_HOW}")
    return path


def load_scrfd(cfg: DetectorConfig):
    """The SCRFD model object of insightface (model_zoo), on CPU or CUDA as onnxruntime offers, or with its
    inference on OpenVINO (detector.scrfd.runtime): insightface's pre- and post-processing either way."""
    import onnxruntime as ort
    from insightface.model_zoo import model_zoo

    ort.set_default_logger_severity(3)
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    kwargs = {"providers": providers}
    if cfg.threads:
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(cfg.threads)
        so.inter_op_num_threads = 1
        kwargs["sess_options"] = so
    model_file = resolve_detector_file(cfg)
    if model_file:
        model = model_zoo.get_model(model_file, **kwargs)
    else:
        from insightface.app import FaceAnalysis

        app = FaceAnalysis(
            name=resolve_detector_pack(cfg),
            root=resolve_insightface_root(cfg),
            allowed_modules=["detection"],
            **kwargs,
        )
        model = app.det_model
    if model is None or getattr(model, "taskname", None) != "detection":
        raise RuntimeError(f"no SCRFD detection model found (pack={cfg.scrfd.pack!r}, file={model_file!r})")
    if scrfd_runtime(cfg.scrfd.runtime, providers) == "openvino":
        from insightface.model_zoo.scrfd import SCRFD

        factory = OpenVinoSessions(cfg.scrfd.precision, cfg.threads, model.model_file)
        model = SCRFD(model_file=model.model_file, session=model.session, resolution_session_factory=factory)
        factory.normalise = (model.input_mean, model.input_std)
        # The canvas goes in as it is (uint8, RGB, a channels-first view without a copy); the compiled model
        # converts and normalises it itself (OpenVINO preprocessing): float conversion in numpy cost ~15%
        # of a big pass (30 of 192 ms at 2048x1536, one thread).
        model._prepare_input_blob = lambda img, size: img[None].transpose(0, 3, 1, 2)
        providers = ["CPUExecutionProvider"]
    else:
        import cv2

        mean, std = model.input_mean, model.input_std
        # insightface expects BGR and swaps to RGB; faceproc gives it RGB, which saves a copy of every photo.
        model._prepare_input_blob = lambda img, size: cv2.dnn.blobFromImage(img, 1.0 / std, size, (mean,) * 3,
                                                                            swapRB=False)
    model.prepare(0 if "CUDAExecutionProvider" in providers else -1, det_thresh=cfg.threshold, nms_thresh=cfg.nms_threshold)
    return model


def scrfd_runtime(setting: str, providers: list[str]) -> str:
    """auto: onnxruntime where it has CUDA, else OpenVINO when installed (about 2x faster on a CPU at the
    same recall, benchmarks/detect_options.py), else onnxruntime on the CPU."""
    if setting != "auto":
        return setting
    if "CUDAExecutionProvider" in providers:
        return "onnxruntime"
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "onnxruntime"
    return "openvino"


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


QUANT_VERSION = 1  # bump when the calibration below changes: cached copies are then made again


def _calibration_blobs(size: int = 640) -> list:
    """Deterministic calibration inputs that ship with insightface (its sample photos: a group, a portrait,
    masked faces), letterboxed at two scales the way SCRFD's passes see them: no user data, same every run."""
    import os

    import cv2
    import insightface

    folder = os.path.join(os.path.dirname(insightface.__file__), "data", "images")
    blobs = []
    for name in sorted(os.listdir(folder)):
        img = cv2.imread(os.path.join(folder, name))
        if img is None:
            continue
        for frac in (1.0, 0.5):
            h, w = img.shape[:2]
            f = frac * size / max(h, w)
            small = cv2.resize(img, (max(1, int(w * f)), max(1, int(h * f))))
            canvas = np.zeros((size, size, 3), np.uint8)
            canvas[: small.shape[0], : small.shape[1]] = small
            blobs.append(cv2.dnn.blobFromImage(canvas, 1 / 128, (size, size), (127.5, 127.5, 127.5), swapRB=True))
    return blobs


def quantized_detector(model_file: str) -> str:
    """An int8 OpenVINO copy of the SCRFD file (NNCF post-training quantization, calibrated on
    _calibration_blobs), made once per machine under $FACEPROC_CACHE (default ~/.cache/faceproc), under a lock."""
    import fcntl
    import os

    from .model import file_sha256

    digest = file_sha256(model_file)[:16]
    cache = os.path.join(os.path.expanduser(os.environ.get("FACEPROC_CACHE", "~/.cache/faceproc")), "detectors")
    os.makedirs(cache, exist_ok=True)
    xml = os.path.join(cache, f"{digest}-int8-v{QUANT_VERSION}.xml")
    with open(os.path.join(cache, ".quantize.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one quantization per machine, whatever runs at once
        if not os.path.exists(xml):
            try:
                import nncf
                import openvino as ov
            except ImportError:
                raise DetectorUnavailable("detector.scrfd.precision = int8 needs nncf (pip install nncf)") from None
            model = ov.Core().read_model(model_file)
            model.reshape({model.inputs[0].any_name: [1, 3, 640, 640]})
            data = _calibration_blobs()
            log.info("quantizing %s to int8 once (%d calibration inputs) into %s", model_file, len(data), xml)
            q = nncf.quantize(model, nncf.Dataset(data), subset_size=len(data), preset=nncf.QuantizationPreset.MIXED)
            q.reshape({q.inputs[0].any_name: ov.PartialShape([1, 3, -1, -1])})
            tmp = xml + ".tmp.xml"
            ov.save_model(q, tmp, compress_to_fp16=False)
            os.replace(tmp[:-4] + ".bin", xml[:-4] + ".bin")
            os.replace(tmp, xml)
    return xml


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


class FaceDetector:
    """prepare once, then detect(rgb) -> Detections in the pixels of the given image."""

    def __init__(self, cfg: DetectorConfig | None = None):
        self.cfg = cfg or DetectorConfig()
        self.model = load_scrfd(self.cfg)
        self.step = 128 if isinstance(getattr(self.model, "resolution_session_factory", None), OpenVinoSessions) else 512

    def _pass(self, rgb: np.ndarray, sizes) -> Detections:
        sizes = [(int(s), int(s)) if np.isscalar(s) else (int(s[0]), int(s[1])) for s in sizes]
        det, kps = self.model.detect(rgb, input_size=sizes, det_thresh=self.cfg.threshold)
        if det.shape[0] == 0:
            return Detections.empty()
        if kps is None:
            kps = np.zeros((det.shape[0], 5, 2), np.float32)
        return Detections(det[:, :4].astype(np.float32), kps.astype(np.float32), det[:, 4].astype(np.float32))

    def passes(self, h: int, w: int, scale: float = 1.0) -> list[tuple[int, int]]:
        """Canvas (width, height) of each pass for an h x w decoded image (`scale`: decoded pixels per
        original pixel): the close-up sizes, then the main pass (see the module docstring)."""
        s = self.cfg.scrfd
        long = float(s.main_size)
        if s.smallest_face > 0:
            want = max(h, w) / scale * FACE_PX / s.smallest_face  # original long side at the wanted scale
            long = max(long, min(want, max(h, w), s.max_size))
        # Above main_size the canvas steps by 128 px, so big photos share a few sizes too (onnxruntime: 512,
        # as it holds a session per size, with its own memory arena on a GPU).
        main = canvas(h, w, long, 32 if long <= s.main_size else self.step)
        return [canvas(h, w, x) for x in s.sizes] + [main]

    def detect(self, rgb: np.ndarray, scale: float = 1.0) -> Detections:
        h, w = rgb.shape[:2]
        # insightface's SCRFD runs every input size and merges them with its own NMS (at nms_threshold); it
        # gets the RGB image as it is (load_scrfd's input blob takes RGB).
        det = self._pass(np.ascontiguousarray(rgb), self.passes(h, w, scale))
        return finish(det, w, h, self.cfg, scale)


def finish(det: Detections, w: int, h: int, cfg: DetectorConfig, scale: float = 1.0) -> Detections:
    """The one place for box post-processing, whatever the detector: clip to the image, drop boxes below
    min_face (original pixels: `scale` is given pixels per original pixel), keep the max_faces best, and
    order in reading order (top to bottom in rows, then left to right) for a deterministic face_index."""
    if not len(det):
        return Detections.empty()
    boxes, kps, scores = det.boxes.copy(), det.kps, det.scores
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    side = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    ok = (side >= 1.0) & (side / scale >= cfg.min_face)
    boxes, kps, scores = boxes[ok], kps[ok], scores[ok]
    if cfg.max_faces and len(scores) > cfg.max_faces:
        top = np.argsort(-scores, kind="stable")[: cfg.max_faces]
        boxes, kps, scores = boxes[top], kps[top], scores[top]
    order = np.lexsort((boxes[:, 0], np.round(boxes[:, 1] / 32)))
    return Detections(boxes[order], kps[order], scores[order])


class YuNetDetector:
    """OpenCV's YuNet (`cv2.FaceDetectorYN`, a 230 KB model): several times cheaper than SCRFD-2.5G on a CPU,
    with the same 5 keypoints in the same order (image-left eye first). The model file comes from
    detector.yunet.model_file / $FACEPROC_DETECTOR_FILE (OpenCV zoo: face_detection_yunet_2023mar.onnx).
    One pass at the decoded resolution up to yunet.max_side (or, with full_res, 2048 px)."""

    def __init__(self, cfg: DetectorConfig | None = None):
        import cv2

        self.cfg = cfg or DetectorConfig()
        path = resolve_detector_file(self.cfg)
        if not path:
            raise DetectorUnavailable("detector kind yunet needs its model file: set detector.yunet.model_file or "
                                      "$FACEPROC_DETECTOR_FILE to face_detection_yunet_2023mar.onnx")
        self.net = cv2.FaceDetectorYN.create(path, "", (320, 320), self.cfg.threshold, self.cfg.nms_threshold, 5000)

    def detect(self, rgb: np.ndarray, scale: float = 1.0) -> Detections:
        import cv2

        h, w = rgb.shape[:2]
        y = self.cfg.yunet
        big = y.full_res == "always" or (y.full_res == "auto" and max(h, w) > y.full_res_above)
        limit = 2048 if big else y.max_side
        f = min(1.0, limit / max(h, w))
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        if f < 1.0:
            bgr = cv2.resize(bgr, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        self.net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self.net.detect(bgr)
        if faces is None or not len(faces):
            return Detections.empty()
        faces = faces.astype(np.float32)
        xy = faces[:, :14] / np.float32(f)  # back to the pixels we were given
        boxes = np.stack([xy[:, 0], xy[:, 1], xy[:, 0] + xy[:, 2], xy[:, 1] + xy[:, 3]], axis=1)
        det = Detections(boxes, xy[:, 4:14].reshape(-1, 5, 2).copy(), faces[:, 14].copy())
        return finish(det, w, h, self.cfg, scale)


class Detector(Protocol):
    """What the pipeline needs from a face detector: boxes, 5 keypoints and scores in the pixels of the
    image it was given, post-processed by `finish`."""

    def detect(self, rgb: np.ndarray, scale: float = 1.0) -> Detections: ...


# Detector kinds (DetectorConfig.kind) -> class; a new detector is one class here and one entry.
DETECTORS: dict[str, type] = {"scrfd": FaceDetector, "yunet": YuNetDetector}


def make_detector(cfg: DetectorConfig | None = None) -> Detector:
    """The one construction site of detectors (pipeline workers and the training crop cache)."""
    cfg = cfg or DetectorConfig()
    try:
        cls = DETECTORS[cfg.kind]
    except KeyError:
        raise ValueError(f"unknown detector kind {cfg.kind!r} (known: {', '.join(DETECTORS)})") from None
    if cfg.threads:  # OpenCV (YuNet itself, decode resizes, letterboxing, crops) keeps to the worker's share
        import cv2    # too: by default it starts a thread per core in every worker process

        cv2.setNumThreads(int(cfg.threads))
    return cls(cfg)
