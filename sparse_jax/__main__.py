"""`python -m sparse_jax COMMAND ...`: the codec's command line.

Commands:
  info --config configs/musicnet.py[:preset]   parameter counts per component, as JSON
  build-data [--preset small|full] [--root DIR] build the embedded classical dataset
"""
import argparse
import importlib.util
import json
import os
import sys
import time

from sparse_jax.errors import UserError


def load_config(spec: str):
  """Loads `path/to/config.py[:arg]` the way ml_collections' config_flags does."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise UserError(f"config file {path!r} not found: pass e.g. --config configs/musicnet.py")
  module_spec = importlib.util.spec_from_file_location("_sparse_jax_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  try:
    return module.get_config(arg or None)
  except ValueError as e:
    raise UserError(str(e)) from None


def cmd_info(args):
  from sparse_jax import info
  start = time.time()
  counts = info.parameter_counts(load_config(args.config))
  counts["seconds"] = round(time.time() - start, 2)
  print(json.dumps(counts, indent=2))


def cmd_build_data(args):
  from sparse_jax.data import classical
  root = classical.build(args.root, preset=args.preset, workers=args.workers)
  print(f"embedded dataset ready at {root}")


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m sparse_jax", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("info", help="parameter counts of a config (no allocation)")
  p.add_argument("--config", required=True)
  p.set_defaults(fn=cmd_info)
  p = sub.add_parser("build-data", help="render the embedded classical dataset (offline)")
  p.add_argument("--preset", default="small", choices=("small", "full"))
  p.add_argument("--root", default=None)
  p.add_argument("--workers", type=int, default=2)
  p.set_defaults(fn=cmd_build_data)
  args = parser.parse_args(argv)
  try:
    args.fn(args)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
