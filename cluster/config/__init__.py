"""Run configuration: frozen dataclasses (runs), per-env presets, config files, one resolver."""

from .presets import distill_config, teacher_config
from .resolve import config_from_dict, with_overrides
from .runs import BEHAVIOURS, MODES, REFRESH_MODES, DistillRunConfig, ExplorationConfig, RunConfig, TeacherRunConfig

__all__ = ["BEHAVIOURS", "MODES", "REFRESH_MODES", "DistillRunConfig", "ExplorationConfig", "RunConfig",
           "TeacherRunConfig", "config_from_dict", "distill_config", "teacher_config", "with_overrides"]
