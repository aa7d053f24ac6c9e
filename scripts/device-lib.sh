# Sourced by the device-check scripts after they set Q (their log file): unpacks the carried binary to
# $B, finds the CUDA libraries (device-env.sh), writes the GPU's name to $Q, and defines
#   el LABEL        "[t=Ns] LABEL" into $Q (seconds since the script started);
#   serve_8b TIME [FLAGS]  the 8B-shaped dummy model behind `launch-server --device cuda FLAGS` (its time to
#                   ready), then
#                   issue 15's serving load (64 streams, 512 in / 256 out exactly, 256 prompts) for at most
#                   TIME seconds; the flags, whether the overlap schedule ran, the figures and the
#                   server's GPU-idle lines into $Q.
# Carry .device-carry (see scripts/device-check-all.sh for what it holds).
export NCCL_NVLS_ENABLE=0
C=.device-carry; B=/tmp/serval; T0=$(date +%s); F=Tests/ServalTestSupport/Fixtures/deepseek
el() { echo "[t=$(( $(date +%s) - T0 ))s] $*" >> $Q; }
xz -dc $C/serval.xz > $B; chmod +x $B
source "$(dirname "${BASH_SOURCE[0]}")/device-env.sh"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> $Q
serve_8b() {
  local limit=$1; shift
  [ -f /tmp/smol4.gguf ] || xz -dc $C/smol4.gguf.xz > /tmp/smol4.gguf
  echo "== serve 8b $*" >> $Q
  $B launch-server --device cuda --model-path $C/llama8b --load-format dummy --tokenizer-path /tmp/smol4.gguf \
    --port 31000 --served-model-name m "$@" > /tmp/srv8b.log 2>&1 &
  local sp=$!
  local t0=$(date +%s.%N)
  for i in $(seq 1 240); do grep -q "fired up" /tmp/srv8b.log && break; sleep 0.25; done
  echo "start-up to ready: $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s" >> $Q
  curl -s localhost:31000/get_server_info | python3 -c \
    "import json,sys; print('disable_overlap_schedule:', json.load(sys.stdin).get('disable_overlap_schedule'))" >> $Q
  timeout -k 10 "$limit" $B bench-serving --backend serval --port 31000 --tokenizer /tmp/smol4.gguf --model m \
    --dataset-name random --random-input-len 512 --random-output-len 256 --random-range-ratio 1 \
    --num-prompts 256 --max-concurrency 64 2>&1 | grep "Output token throughput\|Median TPOT\|Median TTFT\|Failed" >> $Q
  kill $sp; wait $sp 2>/dev/null
  grep "idle between steps\|programmatic\|overlap schedule\|captured at start-up" /tmp/srv8b.log | tail -5 >> $Q
}
