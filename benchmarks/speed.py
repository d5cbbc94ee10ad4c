r"""Speed and memory of the codec: compile time, forward time, train-step time, peak memory, FLOP/s.

  python -m benchmarks.speed                        # the default config, 3 timed runs
  python -m benchmarks.speed --config configs/quickstart.py --runs 5
  python -m benchmarks.speed --quick                # ':tiny' config, 1 run: a smoke test
  python -m benchmarks.speed --codec --input SONG    # encode/decode in fresh processes, first and
                                                    # second run (benchmarks/codec_speed.py)

Writes benchmarks/results/speed_<platform>.json and .md (platform = jax.default_backend()) and
prints the Markdown table.

What is measured, each in its own fresh subprocess (so that peak memories are separate):
  forward     `model.encode_audio` on one (1, n_samples) window: the removal loop, which renders
              every event through the decoder, then the events summed into the reconstruction.
  train step  `train_step.train_step` at batch --batch (generator and, when the config is
              adversarial, discriminator), jitted with the state donated, as in training.
  peak        the device's matmul FLOP/s (see below).
Times: `lower` and `compile` separately, the first call, then the median (and min/max) of --runs
calls after that warm-up call, each closed by `jax.block_until_ready`.  The persistent
compilation cache is switched off (except with --quick), so compile times are real.

Memory.  CPU: the subprocess's peak resident set (VmHWM): `total` over its whole life, compilation
included, and `run`, the peak during the timed calls (VmHWM is reset through /proc/self/clear_refs
just before them; it still counts the resident parameters and compiled code).  GPU:
`memory_stats()['peak_bytes_in_use']`.  XLA's static estimate (`memory_analysis`: arguments +
outputs + temporaries) is listed beside it.

FLOPs.  XLA's `cost_analysis()` counts the body of a while loop once, not times its trip count,
and `lax.scan` lowers to a while loop: the raw count of a 32-event program is the count of ONE
removal step plus the work outside the loop (this script checks it: `raw / unrolled_1` is about
1).  The corrected count lowers the same program with `jax.lax.scan` forced to `unroll=True`
(straight-line code, no loop) for 1 and 2 events and extrapolates the affine cost a + b * E to the
config's E events; the counts are of the lowered (pre-optimisation) HLO, which needs no compile.
The cost is affine in E (per-step work + fixed work), so the extrapolation is exact up to XLA's
simplifications.  A hand count of the encoder's matmuls per step is listed to check the scale.
Achieved FLOP/s = corrected FLOPs / median time.

Peak FLOP/s.  CPU: measured, the median of float32 4096^3 matmuls, and an encoder-shaped matmul
(the gated block's (L, 2C) x (2C, 2C)).  GPU: measured float32 and bfloat16 8192^3 matmuls, plus
the vendor's dense peaks for known devices (no sparsity).
"""
import argparse
import copy
import functools
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import cost, machine
from sparse_jax import files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULT_CONFIG = "configs/musicnet.py"
QUICK_CONFIG = "configs/musicnet.py:tiny"
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")

# The targets for the default config: on the 2-core development CPU, and on an H100.
CPU_TARGETS = {"forward_s": 2.5, "train_step_s": 20.0, "train_peak_bytes": 4e9}
GPU_TARGETS = {"train_step_s": 0.1}

# Vendor dense peaks (FLOP/s, no structured sparsity), matched in order against jax's
# `device_kind`: the first key that is a substring wins, so 'H100 PCIe' precedes 'H100'.
GPU_PEAKS = (
    ("H100 PCIe", {"bf16": 756e12, "tf32": 378e12, "fp32": 51e12}),
    ("H100", {"bf16": 989e12, "tf32": 494e12, "fp32": 67e12}),   # SXM
    ("H200", {"bf16": 989e12, "tf32": 494e12, "fp32": 67e12}),
    ("A100", {"bf16": 312e12, "tf32": 156e12, "fp32": 19.5e12}),
)

GB = 1e9


# ------------------------------------------------------------------------------------------------
# FLOPs.


def encoder_hand_flops(model_cfg, batch: int = 1) -> dict:
  """Multiply-adds x 2 of the encoder's matmuls for one removal step (elementwise work left out).

  The input projection (F -> C) and every gated block ([x_t, x_t+d] (2C) -> 2C) run on the
  first-half prefix each layer needs (`Encoder.frames_needed`); the heads on the first half.
  """
  from flax import nnx

  from sparse_jax.encoder import Encoder
  enc = nnx.eval_shape(lambda: Encoder(model_cfg, nnx.Rngs(0)))
  n_frames = model_cfg.n_samples // model_cfg.hop
  half = n_frames // 2
  needed = [min(n, n_frames) for n in enc.frames_needed()]
  f_bins, c, d = model_cfg.window // 2 + 1, model_cfg.encoder_channels, model_cfg.event_dim
  proj = 2 * needed[0] * f_bins * c
  blocks = sum(2 * n * (2 * c) * (2 * c) for n in needed[1:])
  heads = 2 * half * c * c + 2 * half * c * (d + 1)
  total = batch * (proj + blocks + heads)
  return {"projection": batch * proj, "gated_blocks": batch * blocks, "heads": batch * heads,
          "total": total, "frames_per_layer": needed}


# ------------------------------------------------------------------------------------------------
# Timing.


def _log(message: str) -> None:
  print(f"[speed] {message}", file=sys.stderr, flush=True)


def test_audio(batch: int, n_samples: int, seed: int = 0):
  """A deterministic, music-like batch: a few decaying partials over quiet noise, peak 0.9."""
  import numpy as np
  rng = np.random.default_rng(seed)
  t = np.arange(n_samples) / 22050.0
  out = 0.01 * rng.standard_normal((batch, n_samples))
  for b in range(batch):
    for _ in range(8):
      onset = rng.uniform(0, t[-1] / 2)
      env = np.where(t >= onset, np.exp(-(t - onset) * rng.uniform(1, 6)), 0.0)
      out[b] += env * np.sin(2 * np.pi * rng.uniform(60, 2000) * t + rng.uniform(0, 6.28))
  out *= 0.9 / np.abs(out).max(axis=1, keepdims=True)
  return out.astype(np.float32)


def measure_forward(cfg, runs: int, breakdown: bool) -> dict:
  """Compile and time encode + decode + sum of one window at batch 1."""
  import jax
  import jax.numpy as jnp

  from sparse_jax import train_step
  from sparse_jax.model import encode_audio

  device = jax.devices()[0]
  t = time.perf_counter()
  graphs, state = train_step.create_train_state(cfg)
  g_params = jax.block_until_ready(state.g_params)
  del state
  init_s = time.perf_counter() - t
  audio = jnp.asarray(test_audio(1, cfg.model.n_samples))

  def forward(g_params, audio_BxT, n_events=None):
    model = train_step.merge_generator(graphs, g_params)
    dec = encode_audio(model, audio_BxT, cfg.model, n_events=n_events)
    return dec.events_BxExT.sum(axis=1), dec.vectors_BxExD, dec.frames_BxE, dec.gains_BxE

  _log("forward: lowering and compiling")
  lowered, compiled, times = cost.lower_and_compile(jax.jit(forward), g_params, audio)
  peak_total = cost.peak_rss_bytes() if device.platform == "cpu" else None
  _log(f"forward: compiled in {times['lower_s'] + times['compile_s']:.1f} s; timing {runs} runs")
  rss_reset = device.platform == "cpu" and cost.reset_peak_rss()
  times.update(cost.timed_calls(lambda: compiled(g_params, audio), runs))
  result = {"batch": 1, "n_events": cfg.model.n_events, "init_s": init_s, **times,
            **cost.memory_after_runs(device, rss_reset), "xla_memory": cost.xla_memory(compiled)}
  if peak_total is not None:
    result["peak_rss_total_bytes"] = max(peak_total, cost.peak_rss_bytes())
  _log("forward: counting FLOPs")
  raw_lowered = cost.flops_of(lowered.cost_analysis())
  result["flops"] = {
      "raw_compiled": cost.flops_of(compiled.cost_analysis()), "raw_lowered": raw_lowered,
      **cost.corrected_flops(
          lambda e: jax.jit(functools.partial(forward, n_events=e)).lower(g_params, audio),
          cfg.model.n_events, raw_lowered)}
  result["flops"]["components_per_step"] = component_flops(cfg, graphs, g_params)
  result["flops"]["encoder_hand_count_per_step"] = encoder_hand_flops(cfg.model)
  if breakdown:
    result["breakdown"] = component_times(cfg, graphs, g_params, runs)
  return result


def _component_fns(cfg, graphs):
  """One removal step's parts at batch 1: encoder, event choice + decoder, STFT."""
  from sparse_jax import signal, train_step
  from sparse_jax.encoder import choose_event
  m = cfg.model

  def encoder(g_params, spec):
    model = train_step.merge_generator(graphs, g_params)
    return model.encoder(spec)

  def decoder(g_params, vectors, switch):
    model = train_step.merge_generator(graphs, g_params)
    vector, frame, gain = choose_event(vectors, switch)
    return model.decoder(vector, frame, gain)

  def stft(audio):
    return signal.stft_magnitude(audio, m.window, m.hop)

  return encoder, decoder, stft


def _component_args(cfg, graphs, g_params):
  import jax
  import jax.numpy as jnp
  m = cfg.model
  audio = jnp.asarray(test_audio(1, m.n_samples))
  encoder, _, stft = _component_fns(cfg, graphs)
  spec = jax.jit(stft)(audio)
  vectors, switch = jax.jit(encoder)(g_params, spec)
  return audio, spec, vectors, switch


def component_flops(cfg, graphs, g_params) -> dict:
  """Lowered cost analysis of one step's encoder, decoder (with the event choice) and STFT."""
  import jax
  encoder, decoder, stft = _component_fns(cfg, graphs)
  audio, spec, vectors, switch = _component_args(cfg, graphs, g_params)
  return {"encoder": cost.flops_of(jax.jit(encoder).lower(g_params, spec).cost_analysis()),
          "decoder": cost.flops_of(jax.jit(decoder).lower(g_params, vectors, switch).cost_analysis()),
          "stft": cost.flops_of(jax.jit(stft).lower(audio).cost_analysis())}


def component_times(cfg, graphs, g_params, runs: int) -> dict:
  """Median time of one step's encoder, decoder and STFT, each compiled alone (batch 1)."""
  import jax
  encoder, decoder, stft = _component_fns(cfg, graphs)
  audio, spec, vectors, switch = _component_args(cfg, graphs, g_params)
  out = {}
  for name, fn, args in (("encoder", encoder, (g_params, spec)),
                         ("decoder", decoder, (g_params, vectors, switch)),
                         ("stft", stft, (audio,))):
    _, compiled, t = cost.lower_and_compile(jax.jit(fn), *args)
    t.update(cost.timed_calls(lambda c=compiled, a=args: c(*a), max(runs, 3)))
    out[name] = {"compile_s": t["lower_s"] + t["compile_s"], "median_s": t["median_s"]}
  return out


def measure_train(cfg, runs: int, batch: int, breakdown: bool) -> dict:
  """Compile and time one train step (generator + discriminator) at `batch`, state donated."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from sparse_jax import train_step

  device = jax.devices()[0]
  t = time.perf_counter()
  graphs, state = train_step.create_train_state(cfg)
  state = jax.block_until_ready(state)
  init_s = time.perf_counter() - t
  batch_BxT = jnp.asarray(test_audio(batch, cfg.model.n_samples))

  def step_for(c):
    return jax.jit(functools.partial(train_step.train_step, graphs=graphs, cfg=c),
                   donate_argnums=0)

  _log(f"train step: lowering and compiling (batch {batch})")
  lowered, compiled, times = cost.lower_and_compile(step_for(cfg), state, batch_BxT)
  peak_total = cost.peak_rss_bytes() if device.platform == "cpu" else None
  _log(f"train step: compiled in {times['lower_s'] + times['compile_s']:.1f} s; "
       f"timing {runs} runs")
  rss_reset = device.platform == "cpu" and cost.reset_peak_rss()
  holder = {"state": state}
  del state

  def call():
    holder["state"], holder["metrics"] = compiled(holder["state"], batch_BxT)
    return holder["state"], holder["metrics"]

  times.update(cost.timed_calls(call, runs))
  metrics = {k: float(v) for k, v in jax.device_get(holder.pop("metrics")).items()}
  result = {"batch": batch, "n_events": cfg.model.n_events,
            "adversarial": bool(cfg.loss.adversarial), "init_s": init_s, **times,
            **cost.memory_after_runs(device, rss_reset), "xla_memory": cost.xla_memory(compiled),
            "metrics_finite": bool(all(np.isfinite(v) for v in metrics.values())),
            "loss": metrics.get("loss")}
  if peak_total is not None:
    result["peak_rss_total_bytes"] = max(peak_total, cost.peak_rss_bytes())
  _log("train step: counting FLOPs")
  abstract = jax.eval_shape(lambda: train_step.init_train_state(cfg, 0))
  raw_lowered = cost.flops_of(lowered.cost_analysis())

  def lower_for(e):
    c = copy.deepcopy(cfg)
    c.model.n_events = e
    return step_for(c).lower(abstract, batch_BxT)

  result["flops"] = {"raw_compiled": cost.flops_of(compiled.cost_analysis()),
                     "raw_lowered": raw_lowered,
                     **cost.corrected_flops(lower_for, cfg.model.n_events, raw_lowered)}
  if breakdown and cfg.loss.adversarial:
    result["breakdown"] = generator_only_time(cfg, graphs, batch_BxT, runs)
  return result


def generator_only_time(cfg, graphs, batch_BxT, runs: int) -> dict:
  """The same step with the adversarial loss off: the generator's share of the step."""
  import jax

  from sparse_jax import train_step
  c = copy.deepcopy(cfg)
  c.loss.adversarial = False
  state = jax.block_until_ready(train_step.create_train_state(c)[1])
  jitted = jax.jit(functools.partial(train_step.train_step, graphs=graphs, cfg=c),
                   donate_argnums=0)
  _, compiled, t = cost.lower_and_compile(jitted, state, batch_BxT)
  holder = {"state": state}

  def call():
    holder["state"], metrics = compiled(holder["state"], batch_BxT)
    return metrics

  t.update(cost.timed_calls(call, runs))
  return {"generator_only": {"compile_s": t["lower_s"] + t["compile_s"],
                             "median_s": t["median_s"]}}


def measure_peak(cfg, quick: bool) -> dict:
  """The device's matmul FLOP/s (measured), and the vendor's dense peaks for known GPUs."""
  import jax
  import jax.numpy as jnp

  def matmul_rate(m, k, n, dtype, runs):
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (m, k), dtype)
    b = jax.random.normal(kb, (k, n), dtype)
    f = jax.jit(jnp.matmul)
    t = cost.timed_calls(lambda: f(a, b), runs)
    return {"shape": [m, k, n], "dtype": jnp.dtype(dtype).name, "median_s": t["median_s"],
            "flop_per_s": 2.0 * m * k * n / t["median_s"]}

  platform_name = jax.default_backend()
  runs = 1 if quick else 5
  out = {}
  if platform_name == "cpu":
    size = 1024 if quick else 4096
    out["matmul_f32"] = matmul_rate(size, size, size, jnp.float32, runs)
    c = cfg.model.encoder_channels
    frames = encoder_hand_flops(cfg.model)["frames_per_layer"][1]
    out["encoder_shape_matmul_f32"] = matmul_rate(frames, 2 * c, 2 * c, jnp.float32,
                                                  max(runs, 5))
    out["peak_flop_per_s"] = out["matmul_f32"]["flop_per_s"]
    out["peak_source"] = f"measured: float32 {size}^3 matmul, median of {runs}"
  else:
    size = 2048 if quick else 8192
    out["matmul_f32"] = matmul_rate(size, size, size, jnp.float32, max(runs, 10))
    out["matmul_bf16"] = matmul_rate(size, size, size, jnp.bfloat16, max(runs, 10))
    kind = jax.devices()[0].device_kind
    vendor = next((p for key, p in GPU_PEAKS if key in kind), None)
    out["vendor_peaks_flop_per_s"] = vendor
    # The model computes in float32: its ceiling is the float32 matmul rate XLA reaches (TF32
    # tensor cores where XLA uses them), measured here.
    out["peak_flop_per_s"] = out["matmul_f32"]["flop_per_s"]
    out["peak_source"] = f"measured: float32 {size}^3 matmul (default precision)"
  return out


# ------------------------------------------------------------------------------------------------
# The child process: one measurement, its JSON written to --child-out.


def resolve_config(spec: str) -> str:
  """`path[:preset]` with the path made absolute (relative paths also tried from the repo)."""
  path, sep, preset = spec.partition(":")
  if not os.path.isfile(path) and os.path.isfile(os.path.join(ROOT, path)):
    path = os.path.join(ROOT, path)
  return os.path.abspath(path) + (sep + preset if sep else "")


def child_main(args) -> None:
  import jax
  if not args.quick:
    jax.config.update("jax_enable_compilation_cache", False)
  from sparse_jax.info import load_config_file
  cfg = load_config_file(args.config)
  t = time.perf_counter()
  if args.child == "peak":
    result = measure_peak(cfg, args.quick)
  elif args.child == "forward":
    result = measure_forward(cfg, args.runs, args.breakdown)
  else:
    result = measure_train(cfg, args.runs, args.batch, args.breakdown)
  result["device"] = machine.device_info()
  result["wall_s"] = time.perf_counter() - t
  files.write_text(args.child_out, json.dumps(result, indent=2))


def run_child(kind: str, args, config: str) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, f"{kind}.json")
    cmd = [sys.executable, "-m", "benchmarks.speed", "--child", kind, "--child-out", out,
           "--config", config, "--runs", str(args.runs), "--batch", str(args.batch)]
    cmd += ["--quick"] if args.quick else []
    cmd += ["--breakdown"] if args.breakdown else []
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, check=False)
    if proc.returncode != 0 or not os.path.isfile(out):
      raise RuntimeError(f"the {kind} measurement failed (exit status {proc.returncode}); "
                         "its error is printed above")
    with open(out) as f:
      result = json.load(f)
  result["process_wall_s"] = time.perf_counter() - t
  return result


# ------------------------------------------------------------------------------------------------
# Report.


def _fmt_s(x) -> str:
  if x is None:
    return "-"
  return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"


def _fmt_bytes(x) -> str:
  return "-" if x is None else f"{x / GB:.2f} GB"


def _fmt_flops(x) -> str:
  if x is None:
    return "-"
  return f"{x / 1e9:.1f} G" if x >= 1e9 else f"{x / 1e6:.1f} M"


def _fmt_rate(x) -> str:
  if x is None:
    return "-"
  return f"{x / 1e12:.2f} TFLOP/s" if x >= 1e12 else f"{x / 1e9:.1f} GFLOP/s"


def program_memory(r: dict) -> int | None:
  """The memory figure judged against the target: peak RSS over the whole subprocess on CPU,
  peak device bytes on a GPU."""
  return r.get("peak_rss_total_bytes") or r.get("device_peak_bytes")


def targets_for(platform_name: str, is_default: bool, batch: int) -> dict:
  if not is_default:
    return {}
  if platform_name == "cpu":
    t = dict(CPU_TARGETS)
    if batch != 2:
      t.pop("train_step_s")
      t.pop("train_peak_bytes")
    return t
  return dict(GPU_TARGETS) if batch == 2 else {}


def assemble(args, config: str, children: dict, load_before, load_after, wall_s: float) -> dict:
  device = children["forward"]["device"]
  peak = children["peak"]
  for name in ("forward", "train_step"):
    r = children[name]
    flops = r["flops"].get("corrected")
    r["achieved_flop_per_s"] = flops / r["median_s"] if flops else None
    r["fraction_of_peak"] = (r["achieved_flop_per_s"] / peak["peak_flop_per_s"]
                             if r["achieved_flop_per_s"] and peak.get("peak_flop_per_s") else None)
  is_default = config == resolve_config(DEFAULT_CONFIG)
  targets = targets_for(device["platform"], is_default, args.batch)
  checks = {}
  if "forward_s" in targets:
    checks["forward_s"] = children["forward"]["median_s"] < targets["forward_s"]
  if "train_step_s" in targets:
    checks["train_step_s"] = children["train_step"]["median_s"] < targets["train_step_s"]
  if "train_peak_bytes" in targets:
    mem = program_memory(children["train_step"])
    checks["train_peak_bytes"] = mem is not None and mem < targets["train_peak_bytes"]
  return {
      "config": os.path.relpath(config.split(":")[0], ROOT) + (
          ":" + config.split(":", 1)[1] if ":" in config else ""),
      "quick": bool(args.quick), "runs": args.runs, "batch": args.batch,
      "machine": {**machine.machine_info(), **device, "load_average_before": list(load_before),
                  "load_average_after": list(load_after)},
      "peak": peak, "forward": children["forward"], "train_step": children["train_step"],
      "targets": targets, "targets_met": checks, "wall_s": wall_s,
      "flop_correction": ("XLA's cost_analysis counts a while loop's body once; the corrected "
                          "count lowers the program with jax.lax.scan unrolled for 1 and 2 events "
                          "and extrapolates a + b * E to the config's E (lowered HLO)."),
  }


def markdown(report: dict) -> str:
  m, f, t, peak = report["machine"], report["forward"], report["train_step"], report["peak"]
  targets, met = report["targets"], report["targets_met"]

  def target(key, fmt):
    if key not in targets:
      return "-"
    return f"< {fmt(targets[key])} {'(met)' if met.get(key) else '(MISSED)'}"

  mem_label = "peak RSS (process)" if m["platform"] == "cpu" else "peak device memory"
  lines = [
      f"Config `{report['config']}` on {m['platform']} ({m['device_kind']}; CPU {m['cpu_model']}, "
      f"{m['usable_cores']} cores, {(m['memory_bytes'] or 0) / GB:.0f} GB), jax {m['jax']}; "
      f"load average before {m['load_average_before'][0]:.2f}, after "
      f"{m['load_average_after'][0]:.2f}; median of {report['runs']} runs after a warm-up.",
      "",
      "| program | batch | lower + compile | first call | median (min-max) | target | "
      f"{mem_label} | XLA buffers | FLOPs raw / corrected | achieved | of peak |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for label, r, key in (("forward (encode + decode + sum)", f, "forward_s"),
                        ("train step (G + D)" if t.get("adversarial") else "train step (G)", t,
                         "train_step_s")):
    xm = (r.get("xla_memory") or {}).get("total")
    mem_target = target("train_peak_bytes", _fmt_bytes) if label.startswith("train") else "-"
    mem = _fmt_bytes(program_memory(r)) + ("" if mem_target == "-" else f" {mem_target}")
    frac = r.get("fraction_of_peak")
    lines.append(
        f"| {label} | {r['batch']} | {_fmt_s(r['lower_s'] + r['compile_s'])} | "
        f"{_fmt_s(r['first_call_s'])} | {_fmt_s(r['median_s'])} ({_fmt_s(r['min_s'])}-"
        f"{_fmt_s(r['max_s'])}) | {target(key, _fmt_s)} | {mem} | {_fmt_bytes(xm)} | "
        f"{_fmt_flops(r['flops']['raw_compiled'])} / {_fmt_flops(r['flops']['corrected'])} | "
        f"{_fmt_rate(r.get('achieved_flop_per_s'))} | "
        f"{'-' if frac is None else f'{100 * frac:.1f} %'} |")
  lines.append("")
  peak_line = f"Peak: {_fmt_rate(peak.get('peak_flop_per_s'))} ({peak.get('peak_source')})"
  if "encoder_shape_matmul_f32" in peak:
    e = peak["encoder_shape_matmul_f32"]
    peak_line += (f"; encoder-shaped matmul {e['shape']}: {_fmt_rate(e['flop_per_s'])}")
  if peak.get("matmul_bf16"):
    peak_line += f"; bfloat16 matmul: {_fmt_rate(peak['matmul_bf16']['flop_per_s'])}"
  if peak.get("vendor_peaks_flop_per_s"):
    v = peak["vendor_peaks_flop_per_s"]
    peak_line += "; vendor dense peaks: " + ", ".join(f"{k} {_fmt_rate(x)}" for k, x in v.items())
  lines.append(peak_line + ".")
  comp = f["flops"].get("components_per_step") or {}
  hand = f["flops"].get("encoder_hand_count_per_step") or {}
  lines.append(
      f"Per removal step (batch 1, lowered HLO): encoder {_fmt_flops(comp.get('encoder'))} "
      f"(hand count of its matmuls {_fmt_flops(hand.get('total'))}), decoder "
      f"{_fmt_flops(comp.get('decoder'))}, STFT {_fmt_flops(comp.get('stft'))}; forward "
      f"{_fmt_flops(f['flops'].get('per_event'))} per event.  Raw XLA counts see the scan body "
      f"once (raw / 1-event unrolled = {f['flops'].get('loop_counted_once_ratio') or 0:.2f}); the "
      f"corrected counts extrapolate unrolled 1- and 2-event lowerings to {f['n_events']} events.")
  if m["platform"] == "cpu":
    lines.append(
        f"Peak RSS during the timed runs alone: forward "
        f"{_fmt_bytes(f.get('peak_rss_run_bytes'))}, train step "
        f"{_fmt_bytes(t.get('peak_rss_run_bytes'))} (the table's figure includes compilation).")
  for label, r in (("forward", f), ("train step", t)):
    if r.get("breakdown"):
      parts = ", ".join(f"{k} {_fmt_s(v['median_s'])}" for k, v in r["breakdown"].items())
      lines.append(f"Breakdown of the {label} (each part compiled alone): {parts}.")
  return "\n".join(lines) + "\n"


def default_out(platform_name: str, quick: bool) -> str:
  return os.path.join(RESULTS_DIR, f"speed_{platform_name}{'_quick' if quick else ''}.json")


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default=None,
                 help=f"config file[:preset] (default {DEFAULT_CONFIG}; {QUICK_CONFIG} with "
                 "--quick)")
  p.add_argument("--runs", type=int, default=None,
                 help="timed runs after the warm-up call; the median is reported (default 3; "
                 "1 with --quick)")
  p.add_argument("--batch", type=int, default=2, help="train-step batch size (default 2)")
  p.add_argument("--out", default=None,
                 help="JSON output (default benchmarks/results/speed_<platform>.json); the "
                 "Markdown table is written beside it with .md")
  p.add_argument("--quick", action="store_true", help="smoke run: tiny config, 1 run")
  p.add_argument("--breakdown", action="store_true",
                 help="also time the encoder, decoder and STFT of one step alone, and the "
                 "train step without the discriminator (extra compiles)")
  p.add_argument("--child", choices=("peak", "forward", "train"), help=argparse.SUPPRESS)
  p.add_argument("--child-out", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.config is None:
    args.config = QUICK_CONFIG if args.quick else DEFAULT_CONFIG
  if args.runs is None:
    args.runs = 1 if args.quick else 3
  if args.runs < 1 or args.batch < 1:
    p.error("--runs and --batch must be at least 1")
  return args


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  if "--codec" in argv:  # the codec as a user runs it: benchmarks/codec_speed.py
    from benchmarks import codec_speed
    return codec_speed.main([a for a in argv if a != "--codec"])
  args = parse_args(argv)
  if args.child:
    child_main(args)
    return 0
  from sparse_jax.errors import UserError
  from sparse_jax.info import load_config_file
  config = resolve_config(args.config)
  try:
    load_config_file(config)  # A bad path or preset fails here, in one line, before any child.
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  start = time.perf_counter()
  load_before = os.getloadavg()
  children = {}
  try:
    for kind, key in (("peak", "peak"), ("forward", "forward"), ("train", "train_step")):
      _log(f"measuring {key} in a fresh process")
      children[key] = run_child(kind, args, config)
  except RuntimeError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  report = assemble(args, config, children, load_before, os.getloadavg(),
                    time.perf_counter() - start)
  out = args.out or default_out(report["machine"]["platform"], args.quick)
  table = markdown(report)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  files.write_text(out, json.dumps(report, indent=2) + "\n")
  files.write_text(os.path.splitext(out)[0] + ".md", table)
  print(table)
  print(f"wrote {out} and {os.path.splitext(out)[0]}.md", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
