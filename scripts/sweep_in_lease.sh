#!/bin/bash
# Screening sweep on a leased GPU: several variants of one config trained at once on one GPU
# (each a separate train.py; a small config leaves the GPU mostly idle, so runs share it), each
# exported to a float32 generator (.npz) for evaluation on the CPU held-out clips afterwards:
#
#   OUT=out VARIANTS=scripts/sweeps/quickstart.txt bash scripts/sweep_in_lease.sh
#   for f in out/models/*.npz; do python eval.py --workdir $f --nocompare_untrained \
#       --out runs/sweep/$(basename $f .npz); done
#
# A line of VARIANTS is `name --config.x=... --config.y=...`.  The data: the classical train split
# as OGG in .qsdata/train (+ manifest.json, .complete-small), made here by
# `python scripts/sweep_in_lease.sh`'s companion (see README, "Ablation"), decoded back to WAV
# there, since the WAV split is over the 64 MiB a lease carries.  The OGG round trip (Vorbis at
# compression 0.75) makes this a screening: a variant that wins here is confirmed by a CPU run
# on the WAV data, which is the figure that counts.  Knobs: CONFIG, STOP_MIN, PY.
set -o pipefail
PY=${PY:-python3}; OUT=${OUT:-/tmp/out}; mkdir -p $OUT/models
CONFIG=${CONFIG:-configs/quickstart.py}; STOP_MIN=${STOP_MIN:-6}
VARIANTS=${VARIANTS:-scripts/sweeps/quickstart.txt}
if [ -d .devwhl ]; then $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .devwhl/*.whl || exit 1; export PYTHONPATH=/tmp/site:$PWD; fi
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
for f in ('manifest.json', '.complete-small'):
  shutil.copy('.qsdata/' + f, root)
def decode(path):
  x, sr = sf.read(path, dtype='int16')
  sf.write(f'{root}/train/{os.path.basename(path)[:-4]}.wav', x, sr, subtype='PCM_16')
with mp.Pool(16) as p:
  p.map(decode, sorted(glob.glob('.qsdata/train/*.ogg')))
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
    echo "$name: $(( $(date +%s) - T0 )) s, $(tail -1 $OUT/$name.log)" ) &
done < <(grep -v '^#' $VARIANTS | grep .)   # not a pipe: `wait` must see the runs
wait
echo "sweep: $(( $(date +%s) - T0 )) s"
# What comes back is at most 8 files of 16 MB: the models in tars of four (2 MB each at quickstart size).
cd $OUT && ls models/*.npz | split -l 4 - part. && for p in part.*; do tar czf models_$p.tar.gz -T $p; done
tar czf logs.tar.gz models/*.jsonl *.log && rm -rf models *.log part.* && ls -la
