"""Write params.yaml from conf/ exactly as `dvc exp run -S ...` composes it (DVC's own Hydra call), without running
anything: for machines that run the stages one by one (`python -m stages.<name>`), and to check what a recipe sets.

    python scripts/compose_params.py                                  # the embedded default
    python scripts/compose_params.py recipe=speed_8b data.source=rows.json
"""

import sys
from pathlib import Path

from dvc.utils.hydra import compose_and_dump

ROOT = Path(__file__).resolve().parents[1]


def compose(overrides: list[str], output: Path = ROOT / "params.yaml") -> None:
    compose_and_dump(output, str(ROOT / "conf"), None, "config", str(ROOT), overrides)


if __name__ == "__main__":
    compose(sys.argv[1:])
