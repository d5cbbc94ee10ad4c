#!/bin/bash
# The script that trained the shipped model on a leased GPU (README, model card): one timed run of
# configs/pretrained.py.  Phase 1 times the step at the peak rate (a cosine whose final fraction is
# 1 is constant); phase 2 resumes with the cosine horizon that ends the run in the time left,
# with --stop_after_minutes as the safety net; then the generator is exported.
#
#   python -m sparse_jax gather-audio .pretrain/audio      # the data (108 min, 42 MB)
#   OUT=out bash scripts/train_in_lease.sh                 # END_S=500: about 9 minutes in all
#   INIT=sparse_jax/pretrained/model.npz OUT=out bash scripts/train_in_lease.sh   # continue it
#
# With INIT the run starts from that generator (`train.py --init_from`: fresh discriminator and
# optimisers), so training accumulates lease after lease.  With REAL (folders of real recordings,
# kept out of the training data) the exported model is then judged against the shipped one and
# replaces it only when at least as good on every headline figure and better on one
# (`python -m benchmarks.promote ... --apply`; every run adds a row to docs/leases.md).  On a
# short lease, run that step afterwards on the development machine instead.
#
# On a machine without ml-collections, soundfile or pedalboard, put their wheels in .whl/ (they
# are installed into /tmp/site first).  Knobs: STEPS1 (phase 1 steps), END_S (when phase 2 should
# end, seconds from the start), STOP_S (the hard stop), COMPILE_S (compile time allowed), EXTRA
# (more --config overrides), INIT, REAL, PY.
set -o pipefail
T0=$(date +%s)
PY=${PY:-python3}; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
STEPS1=${STEPS1:-150}; END_S=${END_S:-500}; STOP_S=${STOP_S:-530}; COMPILE_S=${COMPILE_S:-60}
if [ -d .whl ]; then $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1; export PYTHONPATH=/tmp/site:$PWD; fi
export SPARSE_JAX_CACHE=${SPARSE_JAX_CACHE:-/tmp/cache} PYTHONUNBUFFERED=1
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc) > $OUT/machine.txt 2>&1
$PY -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" >> $OUT/machine.txt 2>&1 || { cat $OUT/machine.txt; exit 1; }
cat $OUT/machine.txt
# Decode every recording into the cache in parallel before the clock of phase 1 starts.
$PY -c "
import multiprocessing as mp
from sparse_jax import data
from configs import pretrained
c = pretrained.get_config(); c.data.root = '.pretrain/audio'
def warm(split):
  s = data.make_source(c.data, sample_rate=22050, split=split)
  with mp.Pool(12) as p: p.map(s.audio, range(len(s)), chunksize=4)
  return len(s)
print('cache warm:', warm('train'), warm('test'), 'files')
" || exit 1
W=/tmp/run; ARGS="--config configs/pretrained.py --workdir $W --config.data.root=.pretrain/audio $EXTRA"
# Phase 2 resumes phase 1's checkpoints, so the warm start applies to phase 1 alone.
[ -n "$INIT" ] && INIT_ARG="--init_from=$INIT"
$PY train.py $ARGS $INIT_ARG --config.train.num_steps=$STEPS1 --config.optim.final_lr_fraction=1.0 > $OUT/train1.log 2>&1 || { tail -20 $OUT/train1.log; exit 1; }
SPS=$($PY -c "import json; r=[json.loads(l) for l in open('$W/metrics.jsonl')]; print([x['seconds_per_step'] for x in r if 'seconds_per_step' in x][-1])")
NOW=$(( $(date +%s) - T0 ))
N=$($PY -c "print($STEPS1 + max(10, int(($END_S - $NOW - $COMPILE_S) / $SPS)))")
echo "phase 1: $STEPS1 steps, $SPS s/step, at ${NOW}s; phase 2 to step $N"
$PY train.py $ARGS --config.train.num_steps=$N --stop_after_minutes=$($PY -c "print(max(0.2, ($STOP_S - $NOW) / 60))") > $OUT/train2.log 2>&1
tail -3 $OUT/train2.log
$PY -m sparse_jax export --workdir $W $OUT/model.npz
cp $W/metrics.jsonl $W/config.json $OUT/
if [ -n "$REAL" ]; then
  $PY -m benchmarks.promote $OUT/model.npz --real $REAL --apply --note "lease, ${INIT:+from $INIT, }$(cat $W/config.json | $PY -c 'import json,sys; print(json.load(sys.stdin)["data"]["root"])')" | tee $OUT/promote.txt
  cp sparse_jax/pretrained/model.npz docs/leases.md $OUT/ 2>/dev/null
fi
echo "total $(( $(date +%s) - T0 )) s"
