"""`sparse-jax COMMAND ...` (or `python -m sparse_jax COMMAND ...`): the codec's command line.

  encode IN.wav OUT.sjx --workdir DIR     streaming encode of any length into an event file
                                           (--kbps R: a bitrate target; OUT.wav: a round trip;
                                           IN and OUT folders: a whole tree)
  decode IN.sjx OUT.wav --workdir DIR     render the events back to audio (--original-format,
                                           --rescale; folders too)
  edit IN.sjx OUT.sjx [edits]              new vectors / times, perturb, drop, shift, JSON table
  info IN.sjx | info --config CFG          an event file's summary, or a config's parameter counts
  report IN.wav --workdir DIR --out DIR    an HTML report of one encoding: a folder holding
                                           index.html, its audio and its figures
  build-data [--preset small|full]         render the embedded classical dataset (offline)

`-` is standard input or output where the format allows it (audio in, .sjx in and out, WAV out).
"""
import argparse
import os
import sys

import sparse_jax
from sparse_jax.codec import cli


def cmd_build_data(args):
  from sparse_jax.data import classical
  root = classical.build(args.root, preset=args.preset, workers=args.workers)
  print(f"embedded dataset ready at {root}")


def build_parser() -> argparse.ArgumentParser:
  # The installed `sparse-jax` command and `python -m sparse_jax` share this parser.
  prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
  prog = "python -m sparse_jax" if prog in ("", "__main__.py", "-c") else prog
  parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--version", action="version",
                      version=f"%(prog)s {sparse_jax.__version__}")
  sub = parser.add_subparsers(dest="command", required=True)
  cli.register(sub)
  p = sub.add_parser("build-data", help="render the embedded classical dataset (offline)")
  p.add_argument("--preset", default="small", choices=("tiny", "small", "full"))
  p.add_argument("--root", default=None, help="default: $SPARSE_JAX_DATA or ~/.cache/sparse_jax")
  p.add_argument("--workers", type=int, default=2)
  p.set_defaults(fn=cmd_build_data)
  return parser


def main(argv=None) -> int:
  return cli.run(build_parser().parse_args(argv))


if __name__ == "__main__":
  sys.exit(main())
