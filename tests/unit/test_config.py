from pathlib import Path

import pytest

from faceproc.agegender.spec import resolve_weights_dir
from faceproc.config import Config, DetectorConfig, ModelConfig, ScrfdConfig
from faceproc.detectors.files import resolve_detector_pack, resolve_insightface_root

REPO = Path(__file__).resolve().parents[2]


def test_shipped_annotate_yaml_equals_code_defaults():
    assert Config.load(REPO / "configs" / "annotate.yaml").to_dict() == Config().to_dict()


def test_unknown_key_is_an_error(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("detector:\n  sizess: [640]\n")
    with pytest.raises(ValueError, match="sizess"):
        Config.load(p)


def test_overrides_and_env_precedence(monkeypatch):
    monkeypatch.setenv("FACEPROC_INSIGHTFACE_ROOT", "/env/root")
    monkeypatch.setenv("FACEPROC_DETECTOR_PACK", "buffalo_s")
    assert resolve_insightface_root(DetectorConfig()) == "/env/root"
    assert resolve_insightface_root(DetectorConfig(scrfd=ScrfdConfig(root="/explicit"))) == "/explicit"
    assert resolve_detector_pack(DetectorConfig()) == "buffalo_s"
    assert resolve_detector_pack(DetectorConfig(scrfd=ScrfdConfig(pack="buffalo_m"))) == "buffalo_m"
    monkeypatch.delenv("FACEPROC_INSIGHTFACE_ROOT")
    monkeypatch.delenv("FACEPROC_DETECTOR_PACK")
    assert resolve_insightface_root(DetectorConfig()) == "~/.insightface"  # online default
    assert resolve_detector_pack(DetectorConfig()) == "buffalo_m"
    cfg = Config.load(None, {"model.batch_size": 7, "model.variant": None})
    assert cfg.model.batch_size == 7 and cfg.model.variant == "unfrozen"


def test_weights_dir_defaults_to_package(monkeypatch):
    monkeypatch.delenv("FACEPROC_WEIGHTS_DIR", raising=False)
    assert resolve_weights_dir(ModelConfig()).name == "weights"
    monkeypatch.setenv("FACEPROC_WEIGHTS_DIR", "/w")
    assert str(resolve_weights_dir(ModelConfig())) == "/w"


def test_detection_pass_settings_are_checked_and_old_keys_name_their_replacement():
    """Issue 12 replaced full_res / full_res_above / full_res_max by smallest_face and max_size: an old config
    says what to write instead; odd values of the new settings are refused with the rule."""
    import pytest

    from faceproc.config import Config, ConfigError

    cases = {
        "full_res": ({"full_res": "never"}, "smallest_face (0 = never)"),
        "full_res_max": ({"full_res_max": 1536}, "it is now detector.scrfd.max_size"),
        "sizes": ({"sizes": [160, 640]}, "only the small close-up passes"),
        "smallest_face": ({"smallest_face": -1}, "must be >= 0"),
        "max_size": ({"max_size": 320}, "must be >= main_size"),
        "main_size": ({"main_size": 10}, "must be 64..4096"),
    }
    for name, (scrfd, needle) in cases.items():
        with pytest.raises(ConfigError) as e:
            Config.from_dict({"detector": {"scrfd": scrfd}})
        assert needle in str(e.value), (name, str(e.value))
    ok = Config.from_dict({"detector": {"scrfd": {"sizes": [], "smallest_face": 24, "max_size": 4096}}})
    assert ok.detector.scrfd.smallest_face == 24.0 and ok.detector.scrfd.sizes == []
