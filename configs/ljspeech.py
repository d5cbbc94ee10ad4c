r"""The sparse codec on LJ-Speech (the paper's speech experiments), paper architecture.

  python train.py --config configs/ljspeech.py --workdir runs/ljspeech \
      --config.data.root=/data/LJSpeech-1.1

LJ-Speech is 22050 Hz mono already (13,100 clips, about 24 h).  Hardware and time: the paper
reports early results after about 24 h on one GPU; this config has not been trained here yet.
"""
import ml_collections

from configs import musicnet


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = musicnet.get_config(arg)     # the same presets ('', 'paper', 'tiny')
  c.data.name = "ljspeech"
  c.data.root = ""                 # required: --config.data.root
  return c
