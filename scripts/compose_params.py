"""Write params.yaml from conf/ exactly as `dvc exp run -S ...` composes it (DVC's own Hydra call), without running
anything: for machines that run the stages one by one (`python -m stages.<name>`), and to check what a recipe sets.

    python scripts/compose_params.py                                  # the embedded default
    python scripts/compose_params.py recipe=speed_8b data.source=rows.json
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from medical_r1 import config  # noqa: E402

if __name__ == "__main__":
    config.compose(sys.argv[1:], config.CONF.parent / "params.yaml")
