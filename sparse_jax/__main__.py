"""`python -m sparse_jax COMMAND ...`: the codec's command line.

  encode IN.wav OUT.sjx --workdir DIR     streaming encode of any length into an event file
  decode IN.sjx OUT.wav --workdir DIR     render the events back to audio
  edit IN.sjx OUT.sjx [edits]              new vectors / times, perturb, drop, shift, JSON table
  info IN.sjx | info --config CFG          an event file's summary, or a config's parameter counts
  report IN.wav --workdir DIR --out DIR    self-contained HTML page of one encoding
  build-data [--preset small|full]         render the embedded classical dataset (offline)
"""
import argparse
import sys

from sparse_jax.codec import cli


def cmd_build_data(args):
  from sparse_jax.data import classical
  root = classical.build(args.root, preset=args.preset, workers=args.workers)
  print(f"embedded dataset ready at {root}")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m sparse_jax", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
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
