"""`sparse-jax COMMAND ...` (or `python -m sparse_jax COMMAND ...`): the codec's command line.

  encode IN.wav OUT.sjx [--workdir DIR]   streaming encode of any length into an event file
                                           (--kbps R: a bitrate target; OUT.wav: a round trip;
                                           IN and OUT folders: a whole tree)
  decode IN.sjx OUT.wav [--workdir DIR]   render the events back to audio (--original-format,
                                           --rescale; folders too)
  edit IN.sjx OUT.sjx [edits]              new vectors / times, perturb, drop, shift, JSON table
  info IN.sjx | info --config CFG          an event file's summary, or a config's parameter counts
  report IN.wav --out DIR [--workdir DIR]  an HTML report of one encoding: a folder holding
                                           index.html, its audio and its figures
  build-data [--preset small|full]         render the embedded classical dataset (offline;
                                           --instruments gm --percussion --soundfont SF2)
  gather-audio OUT [--more]                recordings of installed distribution packages into a
                                           training folder (the pretrained recipe's data)
  export --workdir DIR OUT.npz             a run's generator alone (no optimiser, no
                                           discriminator), as the codec and the shipped model load it

Without --workdir the shipped model (sparse_jax/pretrained/model.npz) is used.
`-` is standard input or output where the format allows it (audio in, .sjx in and out, WAV out).
"""
import argparse
import math
import os
import sys

import sparse_jax
from sparse_jax import xla_flags
from sparse_jax.cli import commands as cli
from sparse_jax.errors import UserError


def cmd_build_data(args):
  if args.workers < 0:
    raise UserError(f"--workers {args.workers}: must be 0 (render in this process) or more; pass "
                    "e.g. --workers 2")
  if not (math.isfinite(args.timeout) and args.timeout > 0):
    raise UserError(f"--timeout {args.timeout:g}: must be a positive number of seconds per "
                    "movement; pass e.g. --timeout 120")
  from sparse_jax.data import classical
  style = classical.style_of(args.instruments, args.percussion, args.soundfont)
  root = classical.build(args.root, preset=args.preset, workers=args.workers,
                         progress=not args.quiet, timeout_s=args.timeout,
                         retry_failed=args.retry_failed, style=style)
  print(f"embedded dataset ready at {root}")


def cmd_gather_audio(args):
  from sparse_jax.data import gather
  sources = gather.default_sources() + (gather.more_sources() if args.more else [])
  minutes = gather.gather(args.output, sources, show_progress=not args.quiet)
  for name, m in minutes.items():
    print(f"{name}: {m:.1f} min")
  print(f"{sum(minutes.values()):.1f} min of audio in {args.output}: train on it with "
        f"--config.data.name=folder --config.data.root={args.output}")


def cmd_export(args):
  from sparse_jax import generator
  r = generator.export_workdir(args.workdir, args.output, dtype=args.dtype)
  print(f"{r['path']}: generator of step {r['step']}, {r['parameters']:,} parameters as "
        f"{r['dtype']}, {r['bytes'] / 1e6:.2f} MB")


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
  p.add_argument("--timeout", type=float, default=120.0,
                 help="seconds allowed per movement before it is skipped (default 120)")
  p.add_argument("--retry-failed", action="store_true", help="try failed movements again")
  p.add_argument("--instruments", default="palette", choices=("palette", "gm"),
                 help="palette: each part's own instrument or a MusicNet-like ensemble (default); "
                      "gm: every part a General MIDI program drawn per work and part")
  p.add_argument("--percussion", action="store_true",
                 help="add a seeded GM drum track to about half of the works")
  p.add_argument("--soundfont", default=None, metavar="SF2",
                 help="a General MIDI .sf2 (e.g. /usr/share/sounds/sf2/FluidR3_GM.sf2 from "
                      "fluid-soundfont-gm); default: TimGM6mb inside pretty_midi")
  p.add_argument("--quiet", action="store_true", help="no progress bar")
  p.set_defaults(fn=cmd_build_data)
  p = sub.add_parser("gather-audio", help="recordings of installed distribution packages into a "
                                          "training folder (the pretrained recipe's data)")
  p.add_argument("output", help="the folder to fill (kept: a rerun only adds what is missing)")
  p.add_argument("--more", action="store_true",
                 help="also orchestral music (wesnoth-1.16-music) and Italian speech "
                      "(asterisk-core-sounds-it-wav): 55 min more")
  p.add_argument("--quiet", action="store_true", help="no progress bar")
  p.set_defaults(fn=cmd_gather_audio)
  p = sub.add_parser("export", help="a training run's generator alone, as one .npz file")
  p.add_argument("output", help="the .npz file to write")
  p.add_argument("--workdir", required=True, help="the training run")
  p.add_argument("--dtype", default="float16", choices=("float16", "float32"),
                 help="storage precision of the parameters (default float16: half the size)")
  p.set_defaults(fn=cmd_export)
  return parser


def main(argv=None) -> int:
  xla_flags.set_for_this_process()
  code = cli.run(build_parser().parse_args(argv))
  if argv is None:  # the process's own command line (not a caller in Python): it ends here
    checkpoint = sys.modules.get("sparse_jax.checkpoint")
    if checkpoint is not None:
      checkpoint.leave_quietly_after_a_failed_restore(code)
  return code


if __name__ == "__main__":
  sys.exit(main())
