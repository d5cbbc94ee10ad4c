#!/bin/bash
# Screening sweep on a leased GPU: several variants of one config trained at once on one GPU
# (each a separate train.py; a small config leaves the GPU mostly idle, so runs share it), each
# exported to a float32 generator (.npz) for evaluation on the CPU held-out clips afterwards:
#
#   bash scripts/sweep_in_lease.sh pack         # here, once: the data it carries (.qsdata/)
#   OUT=$OUT VARIANTS=scripts/sweeps/quickstart.txt bash scripts/sweep_in_lease.sh  # on the device,
#                                               # carrying .qsdata and .devwhl (wheels it lacks)
#   for t in out/models_*.tar.gz; do tar xzf $t -C out; done    # back here
#   python eval.py --workdir out/models/NAME.npz --nocompare_untrained --out EVAL/NAME  # here
#   python -m benchmarks.ablation EVAL/*          # the screen's table
# (`pack test` also packs the test split, 8 MB more, and each model is then evaluated on the
# device, NAME.eval.json in logs.tar.gz; with this checkout and the wheels that is over the
# 64 MiB a call carries.)
#
# A line of VARIANTS is `name --config.x=... --config.y=...`.  The data: the classical train split
# as Vorbis in .qsdata/ (about 43 MB; `bash scripts/sweep_in_lease.sh pack` makes it here from the
# built dataset), decoded back to WAV on the device, since the WAV split is over the 64 MiB a
# lease carries.  The Vorbis round trip (compression 0.75) makes this a screening: a variant that
# wins there is confirmed by a CPU run on the WAV data, which is the figure that counts.  Knobs:
# CONFIG, STOP_MIN, PY, NO_WHEELS (set: use the Python's own packages).
#
# Seen on one H200 (jax 0.11.2, CUDA 13): the quickstart config is launch-bound on a GPU (1.7
# steps/s alone), so concurrent runs share it well: about 20 steps/s in all with 7 to 15 runs.
# With 15 runs at once 4 died early (cuFFT could not create a batched plan, then an illegal
# address), with 7 runs 1 did: the screen reports what finished, so read its rows for gaps.
# The screens' rows: benchmarks/results/screen_1.md and screen_2.md (README, representation health).
set -o pipefail
PY=${PY:-python3}; OUT=${OUT:-/tmp/out}
if [ "$1" = pack ]; then
  grep -qx /.qsdata/ .git/info/exclude 2>/dev/null || echo /.qsdata/ >> .git/info/exclude
  SPLITS="train $2" exec $PY - <<'PY'
import glob, os, shutil
import soundfile as sf
from sparse_jax.data import classical
root = classical.default_root()
if not classical.is_built(root):
  raise SystemExit(f'error: {root}: the classical dataset is not built; run '
                   '`python -m sparse_jax build-data` first')
for f in ('manifest.json', '.complete-small'):
  shutil.copy(root / f, '.qsdata')
paths = []
for split in os.environ['SPLITS'].split():
  os.makedirs(f'.qsdata/{split}', exist_ok=True)
  paths += sorted(glob.glob(str(root / split / '*.wav')))
for path in paths:
  x, sr = sf.read(path, dtype='float32')
  out = f'.qsdata/{os.path.basename(os.path.dirname(path))}/{os.path.basename(path)[:-4]}.ogg'
  if os.path.exists(out):
    continue
  # Written in blocks: libsndfile's Vorbis encoder crashed on some whole-file writes here.
  with sf.SoundFile(out, 'w', sr, 1, format='OGG', subtype='VORBIS', compression_level=0.75) as o:
    for i in range(0, len(x), 2**16):
      o.write(x[i:i + 2**16])
print('packed', {s: len(os.listdir(f'.qsdata/{s}')) for s in os.environ['SPLITS'].split()},
      'files into .qsdata/')
PY
fi
mkdir -p $OUT/models
CONFIG=${CONFIG:-configs/quickstart.py}; STOP_MIN=${STOP_MIN:-6}
VARIANTS=${VARIANTS:-scripts/sweeps/quickstart.txt}
if [ -d .devwhl ] && [ -z "$NO_WHEELS" ]; then $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .devwhl/*.whl || exit 1; export PYTHONPATH=/tmp/site:$PWD; fi
export SPARSE_JAX_CACHE=/tmp/cache SPARSE_JAX_DATA=/tmp/classical PYTHONUNBUFFERED=1 \
       XLA_PYTHON_CLIENT_PREALLOCATE=false
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc
 $PY -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())") \
  > $OUT/machine.txt 2>&1 || { cat $OUT/machine.txt; exit 1; }
cat $OUT/machine.txt
$PY - <<'PY' || exit 1
import glob, multiprocessing as mp, os, shutil
import soundfile as sf
root = '/tmp/classical'
os.makedirs(root + '/train', exist_ok=True)
os.makedirs(root + '/test', exist_ok=True)
for f in ('manifest.json', '.complete-small'):
  shutil.copy('.qsdata/' + f, root)
def decode(path):
  x, sr = sf.read(path, dtype='int16')
  split = os.path.basename(os.path.dirname(path))
  sf.write(f'{root}/{split}/{os.path.basename(path)[:-4]}.wav', x, sr, subtype='PCM_16')
with mp.Pool(16) as p:
  p.map(decode, sorted(glob.glob('.qsdata/*/*.ogg')))
from sparse_jax import data
from configs import quickstart
c = quickstart.get_config()
s = data.make_source(c.data, sample_rate=c.model.sample_rate, split='train')
with mp.Pool(16) as p:
  p.map(s.audio, range(len(s)), chunksize=4)
print('data:', len(s), 'files decoded and cached')
PY
T0=$(date +%s)
while read name args; do
  ( $PY train.py --config $CONFIG --workdir /tmp/runs/$name $args --stop_after_minutes=$STOP_MIN \
      > $OUT/$name.log 2>&1
    $PY -m sparse_jax export --workdir /tmp/runs/$name $OUT/models/$name.npz --dtype float32 \
      >> $OUT/$name.log 2>&1
    cp /tmp/runs/$name/metrics.jsonl $OUT/models/$name.metrics.jsonl
    [ -d .qsdata/test ] && $PY eval.py --workdir $OUT/models/$name.npz --nocompare_untrained --out /tmp/eval/$name \
      >> $OUT/$name.log 2>&1 && cp /tmp/eval/$name/metrics.json $OUT/models/$name.eval.json
    echo "$name: $(( $(date +%s) - T0 )) s, $(tail -1 $OUT/$name.log)" ) &
done < <(grep -v '^#' $VARIANTS | grep .)   # not a pipe: `wait` must see the runs
wait
echo "sweep: $(( $(date +%s) - T0 )) s"
# What comes back is at most 8 files of 16 MB: the models in tars of four (2 MB each at quickstart size).
cd $OUT && ls models/*.npz | split -l 4 - part. && for p in part.*; do tar czf models_$p.tar.gz -T $p; done
tar czf logs.tar.gz models/*.json* *.log && rm -rf models *.log part.* && ls -la
