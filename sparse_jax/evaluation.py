"""Evaluation: per-step energy removal and reconstruction quality on held-out clips.

The energy-removal curve is the fraction of the encoded half's spectral L1 energy removed after
k = 1..E events, measured two ways:
  * `sum_of_event_spectrograms`: 1 - ||S - sum_{j<=k} |STFT(e_j)| ||_1 / ||S||_1, what the encoder
    optimises (the residual it sees after step k);
  * `spectrogram_of_summed_audio`: 1 - ||S - |STFT(sum_{j<=k} e_j)| ||_1 / ||S||_1, what a listener
    gets when the events are mixed (phases interfere);
and `over_subtracted`: ||max(sum_{j<=k} |STFT(e_j)| - S, 0)||_1 / ||S||_1, the part of the first
curve's residual that the events took beyond S (events only add magnitude, so no later event can
fill it).  S is the magnitude spectrogram of the clip, restricted to the first half of the frames
(the part the encoder may place events in).  Reconstruction metrics compare the first half of the clip with
the first half of the summed events.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from sparse_jax import checkpoint, data, files, metrics, representation, signal, train_step
from sparse_jax.codec import onsets
from sparse_jax.errors import UserError
from sparse_jax.model import encode_audio

# Clips whose original and reconstruction go to TensorBoard at each evaluation.
AUDIO_EXAMPLES = 3


def make_encoder(cfg, graphs):
  """A jitted (g_params, audio_BxT) -> the Decomposition and the decoder heads' raw outputs for
  each chosen vector ({block: {head: (B, E, ...)}}), which the representation figures read."""

  @jax.jit
  def run(g_params, audio_BxT):
    model = train_step.merge_generator(graphs, g_params)
    d = encode_audio(model, audio_BxT, cfg.model,
                     allowed_BxH=onsets.training_rule(cfg, audio_BxT))  # as it was trained
    b, e, dim = d.vectors_BxExD.shape
    heads = model.decoder.heads(d.vectors_BxExD.reshape(b * e, dim))
    return d, jax.tree.map(lambda v: v.reshape(b, e, *v.shape[1:]), heads)

  return run


def energy_curves(clip_T: np.ndarray, events_ExT: np.ndarray, residual_l1_E: np.ndarray,
                  window: int, hop: int, overshoot_l1_E: np.ndarray | None = None) -> dict:
  """Both per-step removal curves of one clip (see the module docstring), and with
  `overshoot_l1_E` the share of the input's L1 the events took beyond it (the residual's
  negative part, which no later event can fill)."""
  half = (len(clip_T) // hop) // 2
  spec = np.asarray(signal.stft_magnitude(jnp.asarray(clip_T), window, hop))[:, :half]
  total = np.abs(spec).sum() + 1e-12
  partial = np.cumsum(events_ExT, axis=0)
  partial_spec = np.asarray(signal.stft_magnitude(jnp.asarray(partial), window, hop))[..., :half]
  mixed = 1.0 - np.abs(spec[None] - partial_spec).sum((1, 2)) / total
  curves = {"sum_of_event_spectrograms": 1.0 - residual_l1_E / total,
            "spectrogram_of_summed_audio": mixed}
  if overshoot_l1_E is not None:
    curves["over_subtracted"] = np.asarray(overshoot_l1_E) / total
  return curves


def reconstruction_metrics(clip_T: np.ndarray, recon_T: np.ndarray, sample_rate: int) -> dict:
  half = len(clip_T) // 2
  ref, est = clip_T[:half].astype(np.float64), recon_T[:half].astype(np.float64)
  return {"mr_stft": metrics.multi_resolution_stft_distance(ref, est),
          "log_mel": metrics.log_mel_distance(ref, est, sample_rate),
          "si_sdr": metrics.si_sdr(ref, est)}


def evaluate_params(cfg, graphs, g_params, clips_NxT: np.ndarray, batch_size: int = 1,
                    audio_examples: list | None = None) -> dict:
  """Mean curves and metrics of one set of generator parameters over the clips.

  `audio_examples`: a list that gets (clip, sum of its events) for the first `AUDIO_EXAMPLES`
  clips (for TensorBoard).
  """
  run = make_encoder(cfg, graphs)
  curves, recon = [], []
  events: dict[str, list] = {"vectors": [], "frames": [], "gains": [], "audio": []}
  head_outputs: list = []
  for i in range(0, len(clips_NxT), batch_size):
    chunk = clips_NxT[i:i + batch_size]
    dec, heads = jax.device_get(run(g_params, jnp.asarray(chunk)))
    for clip, ev, r, o in zip(chunk, dec.events_BxExT, dec.residual_l1_BxE, dec.overshoot_l1_BxE):
      curves.append(energy_curves(clip, ev, r, cfg.model.window, cfg.model.hop, o))
      recon.append(reconstruction_metrics(clip, ev.sum(0), cfg.model.sample_rate))
      if audio_examples is not None and len(audio_examples) < AUDIO_EXAMPLES:
        audio_examples.append((np.asarray(clip), ev.sum(0)))
    # One window per clip, so the frames are already window-relative.
    for key, value in (("vectors", dec.vectors_BxExD), ("frames", dec.frames_BxE),
                       ("gains", dec.gains_BxE), ("audio", dec.events_BxExT)):
      events[key].append(value.reshape(-1, *value.shape[2:]))
    head_outputs.append(jax.tree.map(lambda v: v.reshape(-1, *v.shape[2:]), heads))
  out = {k: np.mean([c[k] for c in curves], axis=0).tolist() for k in curves[0]}
  out.update({k: float(np.mean([r[k] for r in recon])) for k in recon[0]})
  cat = lambda parts: np.concatenate(parts)
  out["representation"] = representation.summarize(
      cat(events["vectors"]), cat(events["frames"]), cat(events["gains"]),
      events_ExT=cat(events["audio"]), sample_rate=cfg.model.sample_rate,
      head_outputs=jax.tree.map(lambda *parts: cat(parts), *head_outputs),
      windows_E=np.repeat(np.arange(len(clips_NxT)), cfg.model.n_events))
  return out


def plot_curves(path: str, results: dict, title: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for label, res in results.items():
    for key, style in (("sum_of_event_spectrograms", "-"), ("spectrogram_of_summed_audio", "--")):
      k = np.arange(1, len(res[key]) + 1)
      ax.plot(k, 100 * np.asarray(res[key]), style, label=f"{label}: {key.replace('_', ' ')}")
  ax.set_xlabel("events k")
  ax.set_ylabel("spectral L1 energy removed (%)")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  with files.atomic_output(path) as tmp:
    fig.savefig(tmp, dpi=110)
  plt.close(fig)


def evaluate(workdir: str, split: str = "test", n_clips: int | None = None,
             compare_untrained: bool = True, log=print, data_overrides: dict | None = None,
             out_dir: str | None = None, at_onsets: bool | None = None) -> dict:
  """Evaluates a workdir's latest checkpoint, or an exported generator file (.npz, e.g. the
  shipped model); writes OUT/metrics.json and curve.png (OUT: workdir/eval, or FILE's folder/eval).

  `data_overrides` replaces fields of the config's `data` (e.g. {'name': 'classical'}: the shipped
  model on the embedded test split).  `at_onsets` scores with the onset rule or without it
  (None: as the model was trained, `loss.events_at_onsets`).
  """
  if os.path.isfile(workdir):
    from sparse_jax import generator
    cfg, graphs, g_params, model_id, step = generator.load(workdir)
    tb_dir = None
  else:  # the generator alone: evaluation needs neither Adam state nor the discriminator
    cfg, graphs, g_params, model_id, step = checkpoint.restore_generator(workdir, log=log)
    tb_dir = workdir
  for key, value in (data_overrides or {}).items():
    cfg.data[key] = value
  if at_onsets is not None:
    cfg.loss.events_at_onsets = bool(at_onsets)
  source = data.make_source(cfg.data, sample_rate=cfg.model.sample_rate, split=split)
  n_clips = n_clips or cfg.train.eval_clips
  clips = data.eval_clips(source, n_clips, cfg.model.n_samples, seed=0)
  log(f"evaluating step {step} of {workdir} on {len(clips)} {split} clips of {source}")
  examples: list = []
  results = {f"trained (step {step})": evaluate_params(cfg, graphs, g_params, clips,
                                                       audio_examples=examples)}
  if compare_untrained:
    _, fresh = train_step.create_train_state(cfg)
    results["untrained"] = evaluate_params(cfg, graphs, fresh.g_params, clips)
  if out_dir is None:
    out_dir = os.path.join(workdir if tb_dir else os.path.dirname(os.path.abspath(workdir)),
                           "eval")
  os.makedirs(out_dir, exist_ok=True)
  report = {"workdir": os.path.abspath(workdir), "step": step, "split": split,
            "data": str(source), "n_clips": len(clips), "model_id": model_id.hex(),
            "events_at_onsets": bool(cfg.loss.events_at_onsets),
            "curve_definition": __doc__.split("\n\n")[1].strip(), "results": results}
  path = os.path.join(out_dir, "metrics.json")
  files.write_text(path, json.dumps(report, indent=2))
  plot_curves(os.path.join(out_dir, "curve.png"), results,
              f"energy removal, {split} split, step {step}")
  if tb_dir:  # an exported generator has no training run to add figures to
    write_tensorboard(tb_dir, step, next(iter(results.values())), examples, cfg.model.sample_rate)
  for label, res in results.items():
    curve, over = res["sum_of_event_spectrograms"], res["over_subtracted"]
    eighth = min(7, len(curve) - 1)
    log(f"{label}: removed after 1/8/{len(curve)} events: "
        f"{curve[0]:.3f} / {curve[eighth]:.3f} / {curve[-1]:.3f} "
        f"(mixed audio: {res['spectrogram_of_summed_audio'][-1]:.3f}; over-subtracted "
        f"{over[eighth]:.3f} / {over[-1]:.3f}); "
        f"MR-STFT {res['mr_stft']:.3f}, log-mel {res['log_mel']:.3f}, SI-SDR {res['si_sdr']:.2f} dB")
    rep = res["representation"]
    if "effective_rank" in rep:
      log(f"{label}: effective rank {rep['effective_rank']:.2f} of {cfg.model.event_dim}, mean "
          f"|cos| {rep['mean_abs_cosine']:.3f}, {100 * rep['first_frames_share']:.1f}% of events "
          f"in a window's first {representation.FIRST_FRAMES} frames, "
          f"{100 * rep['stacked_share']:.1f}% stacked on an earlier event's frame, centroid spread "
          f"{rep['centroid_spread_octaves']:.2f} octaves, median duration "
          f"{rep['duration_ms']:.0f} ms, {rep['silent_events']} silent events")
  return report


def write_tensorboard(workdir: str, step: int, res: dict, examples, sample_rate: int) -> None:
  """The evaluation's headline figures and a few clips (original, reconstruction) for
  TensorBoard, beside the training scalars (workdir/tensorboard)."""
  from tensorboardX import SummaryWriter
  with SummaryWriter(os.path.join(workdir, "tensorboard")) as tb:
    for name in ("sum_of_event_spectrograms", "spectrogram_of_summed_audio"):
      tb.add_scalar(f"eval/removed_{name}", res[name][-1], step)
    for name in ("mr_stft", "log_mel", "si_sdr"):
      tb.add_scalar(f"eval/{name}", res[name], step)
    for i, (clip, recon) in enumerate(examples):
      # One scale for both, so they compare by ear; TensorBoard's audio takes [-1, 1].
      peak = max(float(np.abs(clip).max()), float(np.abs(recon).max()), 1e-9)
      for kind, audio in (("original", clip), ("reconstruction", recon)):
        tb.add_audio(f"eval/clip_{i}/{kind}", np.asarray(audio, np.float32) / peak, step,
                     sample_rate=sample_rate)


def check_split(split: str) -> None:
  if split not in ("train", "test"):
    raise UserError(f"--split={split!r}: use 'train' or 'test'")
