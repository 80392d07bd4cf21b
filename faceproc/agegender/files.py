"""Age/gender model files: safe loading, saving with a model card, shipping, and the OpenVINO copy."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..storage import file_sha256, write_text_atomic
from .architecture import INPUT_SIZE, NORMALISATION, _keras, get_variant
from .spec import ModelSpec, card_path


class UnsafeModelError(ValueError):
    pass


def load_model(path: str | os.PathLike, compile: bool = False, input_size: int = INPUT_SIZE):
    """Load a .keras file in Keras safe mode: a file that needs arbitrary code (Lambda layers,
    pickled functions) is refused, never executed."""
    keras = _keras()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix != ".keras":
        raise ValueError(f"expected a Keras 3 .keras file, got {path.name}")
    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except ValueError as e:
        if "safe_mode" in str(e) or "unsafe" in str(e).lower() or "lambda" in str(e).lower():
            raise UnsafeModelError(f"{path} needs unsafe deserialisation and was refused: {e}") from None
        raise
    outs = model.output if isinstance(model.output, dict) else None
    if outs is None or set(outs) != {"age", "gender"} or tuple(model.input_shape[1:]) != (input_size, input_size, 3):
        raise ValueError(f"{path} is not a faceproc age/gender model taking {input_size} px (input "
                         f"{model.input_shape}, outputs {list(outs or [])})")
    return model


def save_model(model, path: str | os.PathLike, card: dict[str, Any]) -> dict[str, Any]:
    """Write the .keras file atomically, then its model card (with size, sha256 and version)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)
    sha = file_sha256(path)
    size = int(model.input_shape[1])
    card = {
        "input_size": [size, size, 3],
        "normalisation": NORMALISATION,
        **card,
        "file": path.name,
        "bytes": path.stat().st_size,
        "sha256": sha,
    }
    card.setdefault("version", f"{card.get('variant', 'model')}-{sha[:12]}")
    _write_card(path, card)
    return card


def _write_card(model_path: Path, card: dict[str, Any]) -> None:
    write_text_atomic(json.dumps(card, indent=2, default=str), card_path(model_path))


def publish(model_path: str | os.PathLike, variant: str, dest: str | os.PathLike | None = None,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Copy model + card to <weights dir>/<variant>.keras/.json; the card keeps its training record."""
    src = Path(model_path)
    get_variant(variant)
    dest_dir = Path(dest) if dest else Path(__file__).resolve().parent.parent / "weights"
    dest_dir.mkdir(parents=True, exist_ok=True)
    spec = ModelSpec.resolve(ModelConfig(variant=str(src), runtime="keras"))  # refuses a card of other weights
    card = dict(spec.card)
    if card.get("variant") not in (None, variant):
        raise ValueError(f"{src} is a {card.get('variant')} model, not {variant}")
    target = dest_dir / f"{variant}.keras"
    if target.exists() and target.resolve() == src.resolve():
        # The shipped model itself: only its card gains the new fields. Its weights, sha256 and version stay,
        # so its OpenVINO copy stays current (a calibration still changes the label: ModelSpec adds +cal).
        card.update(extra or {})
        _write_card(target, card)
        return card
    tmp = target.with_name(target.stem + ".tmp.keras")
    # Loaded without compiling, the model is saved without optimizer state (Adam's two moments would
    # triple a fine-tuned model's file); inference never needs it, resuming uses the run's checkpoint.
    load_model(src, compile=False, input_size=spec.input_size).save(tmp)
    os.replace(tmp, target)
    sha = file_sha256(target)
    card.update(extra or {})
    card.update(file=target.name, bytes=target.stat().st_size, sha256=sha, variant=variant,
                version=f"{variant}-{sha[:12]}")
    _write_card(target, card)
    return card


def export_openvino(spec: ModelSpec) -> Path:
    """Write MODEL.openvino.xml/.bin (f32 IR, through a TF SavedModel) and MODEL.openvino.json beside MODEL.keras;
    checked against the Keras outputs on random crops before anything is written."""
    import tempfile

    import numpy as np
    import openvino as ov

    from .architecture import NORMALISATIONS
    from .backend import import_backend_quietly

    path = Path(spec.keras.path)
    keras = import_backend_quietly()
    model = load_model(path, input_size=spec.input_size)
    xml, meta = path.with_suffix(".openvino.xml"), path.with_suffix(".openvino.json")
    with tempfile.TemporaryDirectory() as d:
        model.export(d, format="tf_saved_model", verbose=False)
        ir = ov.convert_model(d)
    s = spec.input_size
    x = NORMALISATIONS[spec.normalisation](np.random.default_rng(0).integers(0, 256, (8, s, s, 3), dtype=np.uint8))
    ref = {k: np.asarray(v).reshape(-1) for k, v in model(x, training=False).items()}
    compiled = ov.Core().compile_model(ir, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(x)
    out = {o.get_any_name(): np.asarray(got[o]).reshape(-1) for o in compiled.outputs}
    diff = {k: float(np.abs(out[k] - ref[k]).max()) for k in ("age", "gender")}
    if diff["age"] > 0.25 or diff["gender"] > 1e-3:
        raise RuntimeError(f"the OpenVINO copy of {path} disagrees with Keras ({diff}); nothing written")
    ov.save_model(ir, str(xml), compress_to_fp16=False)
    meta.write_text(json.dumps({"source": path.name, "source_sha256": spec.keras.sha256, "precision": "f32",
                                "max_abs_diff_vs_keras": diff, "keras_backend": keras.backend.backend(),
                                "openvino": ov.get_version()}, indent=1))
    return xml
