r"""The sparse codec on LJ-Speech (the seed's speech experiments), paper architecture.

  python train.py --config configs/ljspeech.py --workdir runs/ljspeech \
      --config.data.root=/data/LJSpeech-1.1

LJ-Speech is 22050 Hz mono already (13,100 clips, about 24 h).  The seed reports early results
after about 24 h of training; this codebase has not been trained on it yet.
"""
from configs import musicnet


def get_config(arg: str | None = None):
  c = musicnet.get_config(arg)
  c.data.name = "ljspeech"
  c.data.root = ""                 # required: --config.data.root
  return c
