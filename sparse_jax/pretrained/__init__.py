"""The shipped model: `model.npz`, the generator of configs/pretrained.py's run
(docs/model_card.md).  `encode`, `decode`, `edit`, `report` and `api.load_codec()` use it when no
--workdir / model is given.  It holds generator parameters only (float16), read by
`sparse_jax.generator.load`."""
import os

from sparse_jax.errors import UserError

MODEL_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.npz")


def model_path() -> str:
  """The shipped model's file; one UserError line if this installation lacks it."""
  if not os.path.isfile(MODEL_PATH):
    raise UserError(f"no shipped model in this installation ({MODEL_PATH} is missing): pass "
                    "a training workdir or an exported model, or reinstall sparse-jax")
  return MODEL_PATH
