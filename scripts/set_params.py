"""Apply `dvc exp run -S`-style overrides to params.yaml in place (for machines that run stages directly).

    python scripts/set_params.py model.init=random train.max_steps=20
"""

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stages.config import set_dotted  # noqa: E402

tree = yaml.safe_load(open("params.yaml"))
for item in sys.argv[1:]:
    dotted, value = item.split("=", 1)
    set_dotted(tree, dotted, yaml.safe_load(value))
yaml.safe_dump(tree, open("params.yaml", "w"), sort_keys=False)
