#!/bin/bash
# The NCCL communicator on the device (one GPU, one rank): finds libnccl.so.2 (the loader's
# path, ldconfig, a pip nvidia-nccl wheel, anywhere on disk), then runs
# `serval selftest --device cuda --require-nccl`, whose NCCL case runs every collective
# eagerly and inside a captured CUDA graph (replayed twice). Output: $OUT/nccl.txt.
# Binary: $1, else /tmp/serval (as scripts/cuda-device-check.sh unpacks it), else .device-carry/serval.xz.
set -o pipefail
export NCCL_NVLS_ENABLE=0 NCCL_DEBUG=${NCCL_DEBUG:-WARN}
OUT=${OUT:-/tmp}; N=$OUT/nccl.txt
B=${1:-/tmp/serval}
if [ ! -x "$B" ] && [ -f .device-carry/serval.xz ]; then xz -dc .device-carry/serval.xz > /tmp/serval; chmod +x /tmp/serval; B=/tmp/serval; fi
L=""; for n in libnvrtc.so.13 libcublasLt.so.13 libnccl.so.2; do
  p=$(ldconfig -p | grep -m1 "$n" | awk '{print $NF}')
  [ -z "$p" ] && p=$(python3 -c "import nvidia, os; print(next((os.path.join(r, '$n') for d in nvidia.__path__ for r, _, fs in os.walk(d) if '$n' in fs), ''))" 2>/dev/null)
  [ -z "$p" ] && p=$(find / -name "$n" -not -path '/proc/*' 2>/dev/null | head -1)
  [ -n "$p" ] && L="$L:$(dirname $p)"; echo "$n: ${p:-not found}" >> $N
done
export SERVAL_CUDA_LIB_DIR=${SERVAL_CUDA_LIB_DIR:-${L#:}} SERVAL_NCCL_LIB_DIR=${L#:} SERVAL_CUDA_CACHE=${SERVAL_CUDA_CACHE:-/tmp/svcache}
( time timeout 240 $B selftest --device cuda --require-nccl ) 2>&1 | grep -i "nccl\|passed\|FAIL\|device:\|real" >> $N
echo "exit ${PIPESTATUS[0]}" >> $N
cat $N
