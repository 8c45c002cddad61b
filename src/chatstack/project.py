"""Where a chatstack checkout keeps its templates, artifacts and build outputs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "deploy" / "demo.toml"
BUILD_DIR = ROOT / "build" / "serving"
ARTIFACTS = ROOT / "artifacts"
