#!/bin/bash
# Device call 2 of 2 (same warm machine as scripts/cuda-device-check.sh): finishes the peer if call
# 1 could not, then serves the 8B dummy with Serval (start-up cold and warm kernel cache, 64
# concurrent streams through bench-serving and tload.py) and llama.cpp's llama-server -np 64 on the
# F16 GGUF of the same shapes (tload.py). Logs under $OUT.
set -o pipefail
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
C=.device-carry; B=/tmp/serval; T0=$(date +%s); LL=$HOME/ll/build/bin
el() { echo "[t=$(( $(date +%s) - T0 ))s] $*"; }
left() { echo $(( $1 - ($(date +%s) - T0) )); }
[ -x $B ] || { xz -dc $C/serval.xz > $B; chmod +x $B; }
[ -f /tmp/smol4.gguf ] || xz -dc $C/smol4.gguf.xz > /tmp/smol4.gguf
L=""; for n in libnvrtc.so.13 libcublasLt.so.13; do p=$(ldconfig -p | grep -m1 "$n" | awk '{print $NF}'); [ -z "$p" ] && p=$(find / -name "$n" -not -path '*/proc/*' 2>/dev/null | head -1); [ -n "$p" ] && L="$L:$(dirname $p)"; done
export SERVAL_CUDA_LIB_DIR=${L#:} SERVAL_CUDA_CACHE=/tmp/svcache2
Q=$OUT/peer2.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $Q
if [ ! -x $LL/llama-server ]; then
  mkdir -p /tmp/llsrc && cp $C/llsrc.tar.xz $C/tok.json.xz /tmp/llsrc/
  BUILD_S=300 bash $C/build-cuda.sh /tmp/llsrc >> $Q 2>&1; el build >> $Q
fi
if [ -x $LL/llama-bench ] && [ ! -s $HOME/m/f16.gguf ]; then
  mkdir -p $HOME/m; PYTHONPATH=$HOME/ll/gguf-py timeout 60 python3 $C/gen8b.py $HOME/m/f16.gguf /tmp/llsrc/tok.json.xz >> $Q 2>&1
  timeout 60 $LL/llama-bench -m $HOME/m/f16.gguf -ngl 99 -fa 1 -p 4096 -n 128 -r 2 >> $Q 2>&1; el llama-bench >> $Q
fi
V=$OUT/serve.txt
for cache in cold warm; do
  S0=$(date +%s%N)
  $B launch-server --device cuda --model-path $C/llama8b --load-format dummy --tokenizer-path /tmp/smol4.gguf --port 31000 --served-model-name m --cuda-graph-max-bs 64 > /tmp/srv8b-$cache.log 2>&1 &
  SP=$!
  for i in $(seq 1 240); do grep -q "fired up" /tmp/srv8b-$cache.log && break; sleep 0.25; done
  echo "start-up ($cache kernel cache): ready after $(( ($(date +%s%N) - S0) / 1000000 )) ms" >> $V
  if [ $cache = warm ]; then
    timeout 100 $B bench-serving --backend serval --port 31000 --tokenizer /tmp/smol4.gguf --model m --dataset-name random --random-input-len 512 --random-output-len 256 --num-prompts 128 --max-concurrency 64 >> $V 2>&1
    el bench-serving >> $V
    timeout 90 python3 $C/tload.py 31000 64 128 512 256 >> $V 2>&1
    el tload-serval >> $V
  fi
  kill $SP; wait $SP 2>/dev/null
  grep -v "POST\|GET" /tmp/srv8b-$cache.log | grep -i "cuda\|idle\|fired\|error" | tail -12 >> $V
done
if [ -x $LL/llama-server ] && [ -s $HOME/m/f16.gguf ] && [ $(left 560) -gt 100 ]; then
  $LL/llama-server -m $HOME/m/f16.gguf -ngl 99 -fa on -np 64 -c 65536 --port 31001 > /tmp/llsrv.log 2>&1 &
  LP=$!
  for i in $(seq 1 240); do curl -s localhost:31001/health | grep -q ok && break; sleep 0.5; done
  timeout $(( $(left 585) )) python3 $C/tload.py 31001 64 128 512 256 >> $Q 2>&1
  el llama-server >> $Q
  kill $LP
fi
