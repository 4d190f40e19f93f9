"""Where the firmware and board files are, for a checkout or an editable install."""

from __future__ import annotations

import os
from pathlib import Path

# host/keyhook/paths.py -> repository root
REPO = Path(os.environ.get("KEYHOOK_REPO", Path(__file__).resolve().parents[2]))
FIRMWARE = REPO / "firmware"
BOARDS = REPO / "boards"
UNIX_BOARD = BOARDS / "unix"
