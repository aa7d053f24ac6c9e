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
DEVICE_LIB_LOG=$N source "$(dirname "$0")/device-env.sh"
( time timeout 240 $B selftest --device cuda --require-nccl ) 2>&1 | grep -i "nccl\|passed\|FAIL\|device:\|real" >> $N
echo "exit ${PIPESTATUS[0]}" >> $N
cat $N
