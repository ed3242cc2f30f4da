"""The base of every config section: unknown keys are refused, assignments validated."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section (one TOML table): a typo in a key is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
