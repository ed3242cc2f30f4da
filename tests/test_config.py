import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import mtinsar
from mtinsar.config import RunConfig, default_toml, load_config
from mtinsar.errors import ConfigError


def test_default_toml_round_trips_to_defaults_and_documents_every_key():
    text = default_toml()
    assert RunConfig.model_validate(tomllib.loads(text)) == RunConfig()
    for name, section in RunConfig.model_fields.items():
        assert f"[{name}]" in text
        for key, field in type(section.default_factory()).model_fields.items():
            assert field.description, f"{name}.{key} has no description"
            assert f"{key} =" in text


def test_load_config_file_and_overrides(tmp_path):
    p = tmp_path / "run.toml"
    p.write_text("[ingest]\nmultilook = 3\n[mask]\nmin_temporal_coherence = 0.5\n")
    cfg = load_config(p, ingest={"multilook": None, "bbox": (1, 2, 3, 4)})
    assert cfg.ingest.multilook == 3  # None overrides are ignored
    assert cfg.ingest.bbox == (1, 2, 3, 4)
    assert cfg.mask.min_temporal_coherence == 0.5


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[ingest]\nmultilook = 0\n", r"ingest\.multilook"),
        ("[ingest]\nbbox = [3, 2, 1, 4]\n", "min < max"),
        ("[inversion]\nunknown = 1\n", "unknown"),
        ("[reference]\nlon = 1.0\n", "both"),
        ("not toml ===", "not valid TOML"),
    ],
)
def test_bad_config_names_the_file_and_field(tmp_path, text, match):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as err:
        load_config(p)
    assert "bad.toml" in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_importing_the_config_imports_no_stage():
    """The schema is the ground floor: loading it pulls in no science, I/O or workflow."""
    code = "import sys, mtinsar.config; print(*sorted(m for m in sys.modules if 'mtinsar' in m))"
    src = str(Path(mtinsar.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert "mtinsar.config" in loaded
    ground = {"mtinsar", "mtinsar.errors", "mtinsar.conventions"}
    assert [m for m in loaded if m not in ground and not m.startswith("mtinsar.config")] == []
