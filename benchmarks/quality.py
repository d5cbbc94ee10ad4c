r"""Quality at matched bitrate: the trained codec against Opus, MP3 and matching pursuit.

  python benchmarks/quality.py --workdir runs/quickstart
  python benchmarks/quality.py --workdir runs/musicnet --musicnet-root /data/musicnet --clips 16
  python benchmarks/quality.py --workdir W --quick            # 2 clips: a smoke run

For each held-out clip (`data.eval_clips` of the embedded classical set's test split, and of
MusicNet's test recordings when --musicnet-root is given; clips are one model window long unless
--seconds says otherwise, and longer clips go through the streaming codec), four codecs encode and
decode the whole clip:
  ours  `Codec.encode` -> `.sjx` bytes (8-bit vectors) -> `sjx.decode_bytes` -> `Codec.decode`;
  opus  Opus at about 6 kbit/s (its floor), through soundfile;
  mp3   MP3 at about 8 kbit/s (LAME's floor at 22050 Hz), through soundfile;
  mp    matching pursuit over a multi-scale Gabor dictionary with as many atoms per second as our
        codec has events (events per window / the window's half, where a window places its
        events), coded as quantised atoms (about 26 bits each, so far fewer bits than ours);
  mp_rate  the same with as many atoms as fit in our measured bitrate on that clip.
Columns (means over the clips):
  kbit/s        the coded stream: bytes without one-off file headers (our 53-byte `.sjx` header
                and CRC; Ogg's header pages; ID3 tags; MP's 118-bit header) * 8 / duration;
  file kbit/s   the whole file or byte string (for ours: len(sjx bytes) * 8 / duration);
  MR-STFT, log-mel, SI-SDR   `sparse_jax.metrics` on the whole clip;
  explained     1 - ||S(x) - S(y)||_1 / ||S(x)||_1 on the whole clip, S the codec's own |STFT|;
  removed       the per-step energy-removal curve on the first window, after all its events
                (ours: `evaluation.energy_curves`; MP: the same curves for matching pursuit run
                on the first window's first half with the same number of atoms as our events):
                "sum" = through the sum of the events' spectrograms (what the encoder removes),
                "mixed" = through the spectrogram of the summed audio (what a listener hears);
  x realtime    encode + decode time / audio duration (ours after a warm-up that compiles).
Writes results.md, results.json and results.png in --out and prints the table.
"""
import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from sparse_jax.errors import UserError  # noqa: E402

DEFAULT_WORKDIR = "runs/quickstart"
DEFAULT_OUT = os.path.join("benchmarks", "results", "quality")
OPUS_KBPS = 6.0
MP3_KBPS = 8.0
CODECS = ("ours", "opus", "mp3", "mp", "mp_rate")
LABELS = {"ours": "ours (sparse events)", "opus": f"Opus ~{OPUS_KBPS:g}k",
          "mp3": f"MP3 ~{MP3_KBPS:g}k", "mp": "matching pursuit, our events/s",
          "mp_rate": "matching pursuit, our kbit/s"}
METRICS = ("kbps", "file_kbps", "mr_stft", "log_mel", "si_sdr", "explained", "realtime_factor")


# ------------------------------------------------------------------------------------------------
# The codecs on one clip.


def spectral_explained(ref_T, est_T, window: int, hop: int) -> float:
  """1 - ||S(ref) - S(est)||_1 / ||S(ref)||_1 with the codec's |STFT| (1 = same spectrogram)."""
  from sparse_jax import metrics  # pylint: disable=g-import-not-at-top
  return float(metrics.spectral_energy_curve(ref_T, np.asarray(est_T)[None], window, hop)[0])


def clip_metrics(ref_T, est_T, sample_rate: int, window: int, hop: int) -> dict:
  from sparse_jax import metrics  # pylint: disable=g-import-not-at-top
  ref_T, est_T = np.asarray(ref_T, np.float64), np.asarray(est_T, np.float64)
  return {"mr_stft": metrics.multi_resolution_stft_distance(ref_T, est_T),
          "log_mel": metrics.log_mel_distance(ref_T, est_T, sample_rate),
          "si_sdr": metrics.si_sdr(ref_T, est_T),
          "explained": spectral_explained(ref_T, est_T, window, hop)}


def first_window(clip_T: np.ndarray, n_samples: int) -> np.ndarray:
  out = np.zeros(n_samples, np.float32)
  out[:min(n_samples, clip_T.size)] = clip_T[:n_samples]
  return out


def run_ours(codec, clip_T: np.ndarray) -> dict:
  """Our codec through its `.sjx` bytes, and its removal curves on the first window."""
  from sparse_jax import evaluation  # pylint: disable=g-import-not-at-top
  from sparse_jax.codec import sjx  # pylint: disable=g-import-not-at-top
  m = codec.cfg.model
  seconds = clip_T.size / codec.sample_rate
  t = time.perf_counter()
  events, info = codec.encode(clip_T, return_info=True)
  data = sjx.encode_bytes(events, bits=8)
  decoded_T = codec.decode(sjx.decode_bytes(data, expected_model_id=codec.model_id))
  elapsed = time.perf_counter() - t
  # The first window's removal curves, from the encoder's own (unquantised) events: every step,
  # silent ones (gain 0, left out of the EventSet) as zero audio.
  n_steps = info.shares_WxS1.shape[1] - 1
  in_first = info.event_window_E == 0
  events_ExT = np.zeros((n_steps, codec.n_samples), np.float32)
  if in_first.any():
    rendered = codec.render(events.vectors[in_first], events.frames[in_first],
                            events.gains[in_first], events.offsets[in_first])
    events_ExT[info.event_step_E[in_first]] = rendered
  residual_l1_E = info.shares_WxS1[0, 1:] * info.initial_l1_W[0]
  curves = evaluation.energy_curves(first_window(clip_T, codec.n_samples), events_ExT,
                                    residual_l1_E, m.window, m.hop)
  payload = len(data) - sjx.HEADER_BYTES - sjx.CRC_BYTES
  return {"decoded": decoded_T, "kbps": payload * 8 / seconds / 1000,
          "file_kbps": len(data) * 8 / seconds / 1000, "realtime_factor": elapsed / seconds,
          "events_per_second": len(events) / seconds,
          "curves": {k: np.asarray(v, np.float64).tolist() for k, v in curves.items()}}


def run_classic(name: str, clip_T: np.ndarray, sample_rate: int, atoms_per_second: float) -> dict:
  # pylint: disable-next=g-import-not-at-top
  from sparse_jax.baselines import classic_codecs, matching_pursuit
  t = time.perf_counter()
  if name == "opus":
    r = classic_codecs.opus_roundtrip(clip_T, sample_rate, OPUS_KBPS)
  elif name == "mp3":
    r = classic_codecs.mp3_roundtrip(clip_T, sample_rate, MP3_KBPS)
  else:
    r = matching_pursuit.mp_codec(clip_T, sample_rate, atoms_per_second=atoms_per_second)
  elapsed = time.perf_counter() - t
  seconds = clip_T.size / sample_rate
  out = {"decoded": r.decoded_T, "kbps": r.kbps, "file_kbps": r.file_kbps,
         "realtime_factor": elapsed / seconds}
  if name == "mp":
    out["events_per_second"] = round(atoms_per_second * seconds) / seconds
  return out


def spectral_residual_l1(window_T: np.ndarray, events_ExT: np.ndarray, window: int,
                         hop: int) -> np.ndarray:
  """||S - sum_{j<=k} |STFT(e_j)| ||_1 over the first-half frames, for k = 1..E: the residual the
  encoder sees, for any set of events (here matching pursuit's atoms)."""
  from sparse_jax import metrics  # pylint: disable=g-import-not-at-top
  half = (window_T.size // hop) // 2
  spec = metrics.stft_magnitude(window_T, window, hop)[:, :half]
  partial = np.zeros_like(spec)
  out = []
  for e_T in events_ExT:
    partial += metrics.stft_magnitude(e_T, window, hop)[:, :half]
    out.append(np.abs(spec - partial).sum())
  return np.asarray(out)


def mp_curves(clip_T: np.ndarray, model_cfg) -> dict:
  """Matching pursuit's removal curves on the first window, measured like ours.

  MP runs on the window's first half (where our encoder may place events) with as many atoms as
  our codec takes steps per window; each atom is rendered alone (cut to that half) and the curves
  use the same first-half spectrogram as `evaluation.energy_curves`.
  """
  from sparse_jax import evaluation  # pylint: disable=g-import-not-at-top
  from sparse_jax.baselines import matching_pursuit as mp  # pylint: disable=g-import-not-at-top
  n, half = model_cfg.n_samples, model_cfg.n_samples // 2
  window_T = first_window(clip_T, n)
  result = mp.matching_pursuit(window_T[:half].astype(np.float64), model_cfg.n_events)
  events_ExT = np.zeros((model_cfg.n_events, n), np.float32)
  for i in range(result.atoms.size):  # MP stops early only on an exactly explained signal.
    events_ExT[i, :half] = mp.render_atoms(result.atoms[i:i + 1], half)
  residual_l1_E = spectral_residual_l1(window_T, events_ExT, model_cfg.window, model_cfg.hop)
  curves = evaluation.energy_curves(window_T, events_ExT, residual_l1_E, model_cfg.window,
                                    model_cfg.hop)
  return {k: np.asarray(v, np.float64).tolist() for k, v in curves.items()}


# ------------------------------------------------------------------------------------------------
# One dataset.


def events_per_second(model_cfg) -> float:
  """Our codec's event rate: a window's events sit in its first half, and windows advance by
  half a window."""
  return model_cfg.n_events / (model_cfg.n_samples / 2 / model_cfg.sample_rate)


def evaluate_dataset(codec, name: str, data_cfg, n_clips: int, clip_samples: int,
                     log=print) -> dict:
  from sparse_jax import data  # pylint: disable=g-import-not-at-top
  m = codec.cfg.model
  source = data.make_source(data_cfg, sample_rate=m.sample_rate, split="test")
  clips = data.eval_clips(source, n_clips, clip_samples, seed=0)
  aps = events_per_second(m)
  log(f"{name}: {len(clips)} test clips of {clip_samples / m.sample_rate:.2f} s; matching pursuit "
      f"at {aps:.2f} atoms/s")
  # Compile the encoder and the renderer once, untimed.
  codec.encode(clips[0][:codec.n_samples])
  codec.render(np.zeros((1, m.event_dim), np.float32), np.zeros(1, np.int64),
               np.zeros(1, np.float32), np.zeros(1, np.float32))
  per_clip = {c: [] for c in CODECS}
  curves = {"ours": [], "mp": []}
  for i, clip_T in enumerate(clips):
    for c in CODECS:
      if c == "ours":
        r = run_ours(codec, clip_T)
      elif c == "mp_rate":  # Atoms scale the payload linearly: match our bitrate on this clip.
        rate = aps * per_clip["ours"][-1]["kbps"] / max(per_clip["mp"][-1]["kbps"], 1e-9)
        r = run_classic("mp", clip_T, m.sample_rate, rate)
      else:
        r = run_classic(c, clip_T, m.sample_rate, aps)
      row = {k: float(r[k]) for k in ("kbps", "file_kbps", "realtime_factor")}
      row.update(clip_metrics(clip_T, r["decoded"], m.sample_rate, m.window, m.hop))
      if "events_per_second" in r:
        row["events_per_second"] = float(r["events_per_second"])
      if c == "ours":
        curves["ours"].append(r["curves"])
      per_clip[c].append(row)
    curves["mp"].append(mp_curves(clip_T, m))
    log(f"  clip {i + 1}/{len(clips)}: " + ", ".join(
        f"{c} {per_clip[c][-1]['kbps']:.2f} kbit/s MR-STFT {per_clip[c][-1]['mr_stft']:.3f}"
        for c in CODECS))
  codecs = {}
  for c in CODECS:
    keys = per_clip[c][0].keys()
    codecs[c] = {k: float(np.mean([row[k] for row in per_clip[c]])) for k in keys}
    codecs[c]["label"] = LABELS[c]
    codecs[c]["per_clip"] = per_clip[c]
  mean_curves = {c: {k: np.mean([cv[k] for cv in curves[c]], axis=0).tolist()
                     for k in curves[c][0]} for c in curves}
  for c in curves:
    codecs[c]["removed_sum"] = mean_curves[c]["sum_of_event_spectrograms"][-1]
    codecs[c]["removed_mixed"] = mean_curves[c]["spectrogram_of_summed_audio"][-1]
  return {"n_clips": int(len(clips)), "clip_seconds": clip_samples / m.sample_rate,
          "events_per_second": aps, "codecs": codecs, "curves": mean_curves}


# ------------------------------------------------------------------------------------------------
# Output.


def write_atomic(path: str, write) -> None:
  """Calls write(tmp_path), then renames: a reader never sees a half-written file."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  suffix = os.path.splitext(path)[1]
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
  os.close(fd)
  try:
    write(tmp)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _f(x, fmt: str) -> str:
  return "-" if x is None else format(x, fmt)


def markdown(report: dict) -> str:
  lines = [f"Model: `{report['workdir']}` at step {report['step']} "
           f"({report['n_events']} events per {report['window_seconds']:.2f} s window, "
           f"{report['events_per_second']:.2f} events/s); machine: {report['machine']}.",
           f"Command: `{report['command']}`", ""]
  for name, d in report["datasets"].items():
    lines += [f"**{name}** test split: {d['n_clips']} clips of {d['clip_seconds']:.2f} s (means).",
              "",
              "| codec | kbit/s | file kbit/s | MR-STFT (lower better) | log-mel (lower better) | "
              "SI-SDR dB | spectral L1 explained | removed after all events: sum / mixed | "
              "x realtime |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in CODECS:
      r = d["codecs"][c]
      removed = (f"{100 * r['removed_sum']:.1f} % / {100 * r['removed_mixed']:.1f} %"
                 if "removed_sum" in r else "-")
      lines.append(f"| {r['label']} | {r['kbps']:.2f} | {r['file_kbps']:.2f} | "
                   f"{r['mr_stft']:.3f} | {r['log_mel']:.3f} | {r['si_sdr']:.2f} | "
                   f"{100 * r['explained']:.1f} % | {removed} | {r['realtime_factor']:.3f} |")
    lines.append("")
  return "\n".join(lines)


def plot(path: str, report: dict) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  names = list(report["datasets"])
  panels = (("kbps", "kbit/s"), ("mr_stft", "MR-STFT (lower better)"),
            ("log_mel", "log-mel (lower better)"), ("si_sdr", "SI-SDR dB (higher better)"))
  fig, axes = plt.subplots(len(names), 1 + len(panels), figsize=(19, 4.2 * len(names)),
                           squeeze=False, gridspec_kw={"width_ratios": [2.2] + [1] * len(panels)})
  colours = {"ours": "C0", "opus": "C1", "mp3": "C2", "mp": "C3", "mp_rate": "C4"}
  for row, name in zip(axes, names):
    d = report["datasets"][name]
    ax = row[0]
    for c in ("ours", "mp"):
      for key, style in (("sum_of_event_spectrograms", "-"), ("spectrogram_of_summed_audio", "--")):
        y = 100 * np.asarray(d["curves"][c][key])
        ax.plot(np.arange(1, y.size + 1), y, style, color=colours[c],
                label=f"{LABELS[c]}: {'sum of spectrograms' if style == '-' else 'mixed audio'}")
    ax.set_xlabel("events / atoms in the first window")
    ax.set_ylabel("first-half spectral L1 removed (%)")
    ax.set_title(f"{name}: energy removal per step ({d['n_clips']} clips)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    for ax, (key, title) in zip(row[1:], panels):
      values = [d["codecs"][c][key] for c in CODECS]
      ax.bar(range(len(CODECS)), values, color=[colours[c] for c in CODECS])
      ax.set_xticks(range(len(CODECS)), [c for c in CODECS])
      ax.set_title(title, fontsize=10)
      ax.grid(alpha=0.3, axis="y")
  fig.tight_layout()
  fig.savefig(path, dpi=100, format="png")
  plt.close(fig)


def machine_line() -> str:
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
  except OSError:
    pass
  import jax  # pylint: disable=g-import-not-at-top
  return (f"{jax.default_backend()} ({jax.devices()[0].device_kind}), CPU {cpu}, "
          f"{os.cpu_count()} cores")


# ------------------------------------------------------------------------------------------------
# Command line.


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", default=DEFAULT_WORKDIR,
                 help=f"a training run's workdir (default {DEFAULT_WORKDIR})")
  p.add_argument("--clips", type=int, default=None, help="held-out clips (default 8; 2 --quick)")
  p.add_argument("--seconds", type=float, default=None,
                 help="clip length (default: one model window)")
  p.add_argument("--musicnet-root", default="", help="also evaluate MusicNet's test recordings")
  p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
  p.add_argument("--quick", action="store_true", help="smoke run: 2 clips")
  args = p.parse_args(argv)
  if args.clips is None:
    args.clips = 2 if args.quick else 8
  if args.clips < 1:
    p.error("--clips must be at least 1")
  if args.seconds is not None and not args.seconds > 0:
    p.error("--seconds must be positive")
  return args


def run(args, argv) -> dict:
  import ml_collections  # pylint: disable=g-import-not-at-top
  from sparse_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from sparse_jax.codec.stream import Codec  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  codec = Codec.from_workdir(args.workdir)
  cfg = codec.cfg
  m = cfg.model
  clip_samples = m.n_samples if args.seconds is None else int(round(args.seconds * m.sample_rate))
  datasets = {}
  if cfg.data.name == "classical":
    datasets["classical (embedded)"] = cfg.data
  else:
    datasets["classical (embedded)"] = ml_collections.ConfigDict(
        {"name": "classical", "root": "", "cache_dir": cfg.data.get("cache_dir", "")})
  if args.musicnet_root:
    datasets["MusicNet"] = ml_collections.ConfigDict(
        {"name": "musicnet", "root": args.musicnet_root,
         "cache_dir": cfg.data.get("cache_dir", "")})
  log = lambda s: print(s, file=sys.stderr, flush=True)
  ckpt = checkpoint.Checkpointer(args.workdir)
  step = ckpt.latest_step()
  ckpt.close()
  report = {
      "workdir": args.workdir, "step": step, "model_id": codec.model_id.hex(),
      "n_events": int(m.n_events), "window_seconds": m.n_samples / m.sample_rate,
      "sample_rate": int(m.sample_rate), "events_per_second": events_per_second(m),
      "machine": machine_line(),
      "command": "python benchmarks/quality.py " + " ".join(argv),
      "date": datetime.date.today().isoformat(),
      "definitions": __doc__.split("Columns (means over the clips):\n", 1)[1].split(
          "Writes results")[0],
      "datasets": {name: evaluate_dataset(codec, name, d, args.clips, clip_samples, log)
                   for name, d in datasets.items()},
  }
  report["wall_s"] = time.perf_counter() - start
  return report


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parse_args(argv)
  try:
    report = run(args, argv)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  table = markdown(report)

  def write_text(text):
    def write(tmp):
      with open(tmp, "w") as f:
        f.write(text)
    return write

  write_atomic(os.path.join(args.out, "results.json"), write_text(json.dumps(report, indent=2)))
  write_atomic(os.path.join(args.out, "results.md"), write_text(table))
  write_atomic(os.path.join(args.out, "results.png"), lambda tmp: plot(tmp, report))
  print(table)
  print(f"wrote results.md, results.json and results.png in {args.out} "
        f"({report['wall_s']:.0f} s)", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
