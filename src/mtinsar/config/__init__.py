"""Run configuration: one pydantic model per stage, read from TOML, defaults documented here.

`mtinsar config` prints the full default configuration as commented TOML; every key of the
sections appears there with its description, so a config file only needs the keys it
changes. The schema is the ground floor of the package: it imports nothing from mtinsar but
the errors, and the stages import their section from here.
"""

from mtinsar.config.analysis import (
    InversionConfig,
    MaskConfig,
    ModelConfig,
    QcConfig,
    ReferenceConfig,
)
from mtinsar.config.base import Section
from mtinsar.config.corrections import (
    DemErrorConfig,
    ExternalDelayConfig,
    RampConfig,
    TroposphereConfig,
    UnwrapConfig,
)
from mtinsar.config.files import default_toml, load_config
from mtinsar.config.ingest import IngestConfig, StorageConfig
from mtinsar.config.run import ExecutionConfig, NrtConfig, OutputConfig, RunConfig

__all__ = [
    "DemErrorConfig",
    "ExecutionConfig",
    "ExternalDelayConfig",
    "IngestConfig",
    "InversionConfig",
    "MaskConfig",
    "ModelConfig",
    "NrtConfig",
    "OutputConfig",
    "QcConfig",
    "RampConfig",
    "ReferenceConfig",
    "RunConfig",
    "Section",
    "StorageConfig",
    "TroposphereConfig",
    "UnwrapConfig",
    "default_toml",
    "load_config",
]
