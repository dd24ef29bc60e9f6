import os

import pytest
import torch

# precision "auto" resolves to fp32 on every machine kind (with or without native bf16), in subprocesses too:
# the suite's numbers must not depend on which CPU CI lands on; bf16 tests ask for "bf16" explicitly
os.environ["TINYDISTIL_CPU_BF16"] = "0"

import tinydistil.train  # noqa: F401  (its model imports replace sys.modules["transformers"] in transformers 5: do it
# before the test modules `import transformers`, so their monkeypatches reach the module the package uses)
from tinydistil.presets import stage_config


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def smoke_teacher(tmp_path_factory):
    """A tiny teacher pretrained for a few steps on the bundled sample (shared by the tests)."""
    from tinydistil.train import pretrain_teacher

    out = tmp_path_factory.mktemp("teacher")
    cfg = stage_config("smoke", "teacher", output_dir=str(out / "run"))
    return pretrain_teacher(cfg, progress=False)
