#!/bin/bash
# Decode and prefill A/B on one GPU, in parts (PARTS, default all, in this order; about 8 minutes on an
# H100 for all of them, so pick parts to stay inside one 10-minute call):
#   selftest  the full `selftest --device cuda` (ops, seam, sampler, MLA, fp8, NCCL, TP communicators)
#   model     the V3 fixtures against the CPU (fp8 weights kept as fp8, and with SERVAL_CUDA_FP8=0) and the
#             default GGUF's first 4 blocks through the model check with its graph check
#   benchcuda bench-cuda: copy bandwidth, GEMM, every GEMV variant, decode attention, extend and MLA kernels
#   b1        the 8B-shaped dummy's batch-1 decode twice under each setting (default: PDL and the smem
#             GEMV; SERVAL_CUDA_GEMV=bulk; SERVAL_CUDA_PDL=0)
#   v2lite    DeepSeek-V2-Lite shapes at batch 1 / 32 under each MLA decode kernel (MLA_KERNELS, default
#             "v1 v2") and at batch 128
#   v2attr    V2-Lite's batch-1 decode (graphs) under each SERVAL_CUDA_MLA_MIN_TILES (MIN_TILES, default
#             "1 2 4 8"), then with groups of kernels left out (SERVAL_CUDA_SKIP_KERNELS: outputs are wrong,
#             the step time without them is the figure), so each group's share of the step is the
#             difference; not in the default
#   v2ab      V2-Lite's batch-1 decode: the defaults against MLA v1 and against one-tile splits,
#             every kernel's carveout at 100% (also the 8B's batch 1), the splitk GEMV, and the MLA,
#             MoE and GEMV kernels' shares (SERVAL_CUDA_SKIP_KERNELS); not in the default
#   mlab1     the MLA kernel at batch 1: bench-cuda under 1 / 2 / 8 tiles a split, V2-Lite batch 1 with
#             v2deep in one pass and v2h16 in one-tile splits against the default, ncu's full set on
#             one launch; not in the default
#   v3fp8     bench-cuda's GEMMs (bf16, fp8 blocks, fp8 dequantized), then DeepSeek-V3 shapes, 3 layers (one
#             dense, two MoE), fp8 dummy weights: prefill of 2,048 tokens and
#             decode at batch 32 / 128: the defaults (bf16 dequantization before each multi-row product,
#             warp-per-row experts), the block-scaled fp8 GEMM (SERVAL_CUDA_FP8_GEMM=blocks), and that with the
#             fp8 experts on tensor cores from 2 pairs an expert (SERVAL_CUDA_MOE_MMA=2); not in the default
#   moemma    V2-Lite batch 32 / 128 and a 2,048-token prefill with the routed experts on tensor cores
#             (SERVAL_CUDA_MOE_MMA=8 and =2) against the warp-per-row kernels (the default); not in the default
#   batch     the 8B at batch 64 / 256 (input 128) and 256 x 512-token prompts
#   prefill   one 4096-token 8B prefill per extend kernel (EXTEND_KERNELS, default "mma3"), one
#             without the bf16 carry (SERVAL_CUDA_BF16_CARRY=0), one without the fused q/k/v
#             (SERVAL_CUDA_FUSE_QKV=0), then the default again
#   serve     the 8B server under 64 streams (512 in / 256 out), the overlap schedule on (the CUDA
#             default) and off (--disable-overlap-schedule; SERVE_OFF=0 skips it), ROUNDS times each
#             (default 1), alternating
#   ncu       ncu per-kernel time summaries of a 4096-token 8B prefill and of V2-Lite's batch-1 decode
#             (NCU_V2LITE=0 skips the latter)
#   ncu64     the same for the 8B's decode steps at batch 64 over 1024-token contexts (not in the default)
# Carry .device-carry as for scripts/device-check-all.sh. Log: $OUT/ab.txt.
# Run: PARTS="selftest prefill serve" bash scripts/device-check-decode-ab.sh
set -o pipefail
Q=$OUT/ab.txt
source "$(dirname "$0")/device-lib.sh"
PARTS=${PARTS:-selftest model benchcuda b1 v2lite batch prefill serve ncu}
want() { [[ " $PARTS " == *" $1 "* ]]; }
ab() {  # label, env..., then bench-one-batch arguments after --
  local label=$1; shift; local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  echo "== $label" >> $Q
  env "${envs[@]}" timeout -k 10 ${ABT:-90} $B bench-one-batch --device cuda --load-format dummy "$@" 2>&1 \
    | grep "Decode.  median\|Prefill\|rror" >> $Q
}
L8="--model-path $C/llama8b"
W=/tmp/v2lite; mkdir -p $W; cp $C/v2lite.json $W/config.json
[ -f /tmp/smol4.gguf ] || xz -dc $C/smol4.gguf.xz > /tmp/smol4.gguf
if want selftest; then
  timeout -k 10 120 $B selftest --device cuda 2>&1 | grep -v "^PASS\|^ok " >> $Q
  el selftest
fi
if want model; then
  for m in v2-lite v2-group v3 v3-fp8 bf16:v3-fp8; do
    echo "== $m" >> $Q
    [ "${m%%:*}" = bf16 ] && export SERVAL_CUDA_FP8=0  # fp8 weights dequantized to bf16 at load instead
    timeout -k 10 30 $B selftest --device cuda --only none --model-path $F/${m#bf16:} --model-steps 8 2>&1 \
      | grep "model check\|reference\|rror\|fp8" >> $Q
  done
  unset SERVAL_CUDA_FP8
  # GPU vs CPU greedy / teacher-forced, then the graph check (decode steps replayed as CUDA graphs
  # against the same steps eager).
  echo "== smol4 (graph check)" >> $Q
  timeout -k 10 60 $B selftest --device cuda --only none --model-path /tmp/smol4.gguf --model-steps 8 2>&1 \
    | grep "model check\|graph\|reference\|rror" >> $Q
  el model
fi
if want benchcuda; then
  timeout -k 10 90 $B bench-cuda --decode-batches "" 2>&1 | grep "copy\|mla\|gemm\|gemv\|decode attention\|extend\|launch" >> $Q
  el bench-cuda
fi
if want b1; then
  for round in 1 2; do
    ab "8b b1 default (smem GEMV, pdl)" X=1 -- $L8 --batch-size 1 --input-len 128 --output-len 32
    ab "8b b1 bulk GEMV" SERVAL_CUDA_GEMV=bulk -- $L8 --batch-size 1 --input-len 128 --output-len 32
    ab "8b b1 no pdl" SERVAL_CUDA_PDL=0 -- $L8 --batch-size 1 --input-len 128 --output-len 32
  done
  el 8b-b1
fi
if want v2lite; then
  for mla in ${MLA_KERNELS:-v1 v2}; do
    ab "v2lite b1 32 mla=$mla" SERVAL_CUDA_MLA=$mla -- --model-path $W --batch-size 1 32 --input-len 128 --output-len 16
  done
  ab "v2lite b128" X=1 -- --model-path $W --batch-size 128 --input-len 128 --output-len 16
  el v2lite
fi
if want v2attr; then
  V1="--model-path $W --batch-size 1 --input-len 128 --output-len 32"
  for mt in ${MIN_TILES:-1 2 4 8}; do ab "v2lite b1 mla min tiles $mt" SERVAL_CUDA_MLA_MIN_TILES=$mt -- $V1; done
  small=sv_copy_rows,sv_rope,sv_rmsnorm,sv_add_rmsnorm,sv_silu,sv_add_f32,sv_mla_write
  for skip in sv_mla_decode sv_moe_gate_up_grouped,sv_moe_down_grouped sv_moe_ sv_gemv sv_head_matmul $small \
    "$small,sv_mla_decode,sv_moe_,sv_head_matmul"; do
    ab "v2lite b1 without $skip" SERVAL_CUDA_SKIP_KERNELS=$skip -- $V1
  done
  ab "v2lite b1 default again" X=1 -- $V1
  el v2attr
fi
if want v2ab; then
  # V2-Lite batch 1: this build's defaults (MLA v2, splits of two tiles or more) against MLA v1 and
  # one-tile splits, and every kernel's shared-memory carveout at 100% (one L1 / shared split for all).
  V1="--model-path $W --batch-size 1 --input-len 128 --output-len 32"
  for round in 1 2; do
    ab "v2lite b1 default" X=1 -- $V1
    ab "v2lite b1 carveout 100" SERVAL_CUDA_CARVEOUT=100 -- $V1
  done
  ab "v2lite b1 splitk GEMV" SERVAL_CUDA_GEMV=splitk -- $V1
  ab "v2lite b1 mla v1" SERVAL_CUDA_MLA=v1 -- $V1
  ab "v2lite b1 mla min tiles 1" SERVAL_CUDA_MLA_MIN_TILES=1 -- $V1
  for skip in sv_mla_decode sv_moe_ sv_gemv; do
    ab "v2lite b1 without $skip" SERVAL_CUDA_SKIP_KERNELS=$skip -- $V1
  done
  ab "8b b1 default" X=1 -- $L8 --batch-size 1 --input-len 128 --output-len 32
  ab "8b b1 carveout 100" SERVAL_CUDA_CARVEOUT=100 -- $L8 --batch-size 1 --input-len 128 --output-len 32
  # (Leaving out sv_decode_attn hung the 8B's bench at 23:5x UTC on 2026-12-07; not understood yet.)
  for skip in sv_add_rmsnorm,sv_rope,sv_kv_write,sv_silu,sv_f32_to,sv_bf16_to sv_gemv; do
    ab "8b b1 without $skip" SERVAL_CUDA_SKIP_KERNELS=$skip -- $L8 --batch-size 1 --input-len 128 --output-len 32
  done
  el v2ab
fi
if want mlab1; then
  # The MLA kernel at batch 1, where its fixed cost (18.5 us a layer at a 150-token context inside V2-Lite's
  # graph, 25 us alone) is not explained yet: bench-cuda at 150 and 1,024 tokens under 1, 2 and 8 tiles a
  # split (v1, v2h16, v2deep each), V2-Lite batch 1 with five stages in one pass (v2deep, 8 tiles a split)
  # against the default, and ncu's full set on one v2h16 launch (stall reasons, occupancy).
  for mt in 1 2 8; do
    echo "== bench-cuda mla, splits of at least $mt tiles" >> $Q
    SERVAL_CUDA_MLA_MIN_TILES=$mt timeout -k 10 60 $B bench-cuda --mla-only --mla-cases 16:1:150,16:1:1024 2>&1 \
      | grep "mla" >> $Q
  done
  V1="--model-path $W --batch-size 1 --input-len 128 --output-len 32"
  ab "v2lite b1 default" X=1 -- $V1
  ab "v2lite b1 v2deep, one pass" SERVAL_CUDA_MLA=v2deep SERVAL_CUDA_MLA_MIN_TILES=8 -- $V1
  ab "v2lite b1 v2h16, one-tile splits" SERVAL_CUDA_MLA=v2h16 SERVAL_CUDA_MLA_MIN_TILES=1 -- $V1
  NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  if [ -n "$NCU" ]; then
    echo "== ncu full: sv_mla_decode_mma2, batch 1 x 150" >> $Q
    SERVAL_CUDA_MLA=v2h16 timeout -k 10 90 $NCU --clock-control none --set full -k regex:sv_mla_decode_mma2 \
      --launch-skip 5 --launch-count 1 $B bench-cuda --mla-only --mla-cases 16:1:150 2>&1 \
      | grep -E "Duration|Elapsed Cycles|SM Frequency|DRAM Throughput|Registers|Occupancy|Stall|stall|Warp Cycles|Issued|Shared Memory" \
      | head -60 >> $Q
  fi
  el mlab1
fi
if want v3fp8; then
  V3=/tmp/v3fp8; mkdir -p $V3
  cat > $V3/config.json <<'EOF2'
{"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "vocab_size": 129280,
 "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048, "num_hidden_layers": 3,
 "num_attention_heads": 128, "num_key_value_heads": 128, "n_shared_experts": 1, "n_routed_experts": 256,
 "num_experts_per_tok": 8, "first_k_dense_replace": 1, "moe_layer_freq": 1, "kv_lora_rank": 512,
 "q_lora_rank": 1536, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
 "topk_method": "noaux_tc", "n_group": 8, "topk_group": 4, "norm_topk_prob": true, "scoring_func": "sigmoid",
 "routed_scaling_factor": 2.5, "hidden_act": "silu", "max_position_embeddings": 163840, "rms_norm_eps": 1e-6,
 "rope_theta": 10000, "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
 "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}, "tie_word_embeddings": false,
 "torch_dtype": "bfloat16", "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
 "quant_method": "fp8", "weight_block_size": [128, 128]}}
EOF2
  echo "== bench-cuda --gemm-only (bf16; fp8 blocks; fp8 dequantize + bf16)" >> $Q
  timeout -k 10 120 $B bench-cuda --gemm-only 2>&1 | grep "gemm\|rror" >> $Q
  export ABT=150
  for gm in "dequant 0" "blocks 0" "blocks 2"; do
    set -- $gm
    ab "v3 fp8 (3 layers) prefill 2048 gemm=$1 moe mma=$2" SERVAL_CUDA_FP8_GEMM=$1 SERVAL_CUDA_MOE_MMA=$2 -- \
      --model-path $V3 --disable-cuda-graph --batch-size 1 --input-len 2048 --output-len 4
    ab "v3 fp8 (3 layers) b32 b128 gemm=$1 moe mma=$2" SERVAL_CUDA_FP8_GEMM=$1 SERVAL_CUDA_MOE_MMA=$2 -- \
      --model-path $V3 --batch-size 32 128 --input-len 128 --output-len 16
  done
  unset ABT; el v3fp8
fi
if want moemma; then
  for mm in 0 8 2; do
    ab "v2lite b32 b128 moe mma=$mm" SERVAL_CUDA_MOE_MMA=$mm -- --model-path $W --batch-size 32 128 --input-len 128 \
      --output-len 16
    ab "v2lite prefill 2048 moe mma=$mm" SERVAL_CUDA_MOE_MMA=$mm -- --model-path $W --disable-cuda-graph --batch-size 1 \
      --input-len 2048 --output-len 4
  done
  el moemma
fi
if want batch; then
  ab "8b b64 b256" X=1 -- $L8 --batch-size 64 256 --input-len 128 --output-len 24
  ab "8b b256 x 512" X=1 -- $L8 --batch-size 256 --input-len 512 --output-len 8
  el 8b-batch
fi
if want prefill; then
  for e in ${EXTEND_KERNELS:-mma3}; do
    ab "8b prefill 4096 extend=$e" SERVAL_CUDA_EXTEND=$e -- $L8 --disable-cuda-graph --batch-size 1 \
      --input-len 4096 --output-len 4
  done
  ab "8b prefill 4096 without the bf16 carry" SERVAL_CUDA_BF16_CARRY=0 -- $L8 --disable-cuda-graph --batch-size 1 \
    --input-len 4096 --output-len 4
  ab "8b prefill 4096 without the fused q/k/v" SERVAL_CUDA_FUSE_QKV=0 -- $L8 --disable-cuda-graph --batch-size 1 \
    --input-len 4096 --output-len 4
  ab "8b prefill 4096 default again" X=1 -- $L8 --disable-cuda-graph --batch-size 1 --input-len 4096 --output-len 4
  el prefill
fi
if want serve; then
  for round in $(seq 1 ${ROUNDS:-1}); do
    serve_8b 90
    el "serve $round: overlap on"
    [ "${SERVE_OFF:-1}" = 0 ] && continue
    serve_8b 90 --disable-overlap-schedule
    el "serve $round: overlap off"
  done
fi
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if want ncu && [ -n "$NCU" ]; then
  # Where a 4096-token 8B prefill's time goes: 700 kernels after the warm-up's (a short prefill), by name.
  echo "== ncu: 8b prefill 4096, per kernel" >> $Q
  timeout -k 10 60 $NCU --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel \
    --launch-skip 700 --launch-count 700 $B bench-one-batch --device cuda $L8 --load-format dummy \
    --disable-cuda-graph --batch-size 1 --input-len 4096 --output-len 1 2>&1 \
    | grep -E "^  [A-Za-z_]|gpu__time_duration|Invocations|rror" | head -200 >> $Q
  el ncu-prefill
  # Where V2-Lite's batch-1 decode step goes (eager, after the prefill and the first decode steps).
  if [ "${NCU_V2LITE:-1}" != 0 ]; then
    echo "== ncu: v2lite decode b1, per kernel" >> $Q
    timeout -k 10 90 $NCU --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel \
      --launch-skip 3000 --launch-count 1500 $B bench-one-batch --device cuda --model-path $W \
      --load-format dummy --disable-cuda-graph --batch-size 1 --input-len 128 --output-len 64 2>&1 \
      | grep -E "^  [A-Za-z_]|gpu__time_duration|Invocations|rror" | head -200 >> $Q
    el ncu-v2lite
  fi
fi
if want ncu64 && [ -n "$NCU" ]; then
  # Where an 8B decode step at batch 64 over 1024-token contexts goes (eager; the launches skipped
  # cover the 64 prefills, so the 900 profiled are decode steps).
  echo "== ncu: 8b decode b64 ctx 1024, per kernel" >> $Q
  timeout -k 10 150 $NCU --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel \
    --launch-skip ${NCU64_SKIP:-9000} --launch-count 900 $B bench-one-batch --device cuda $L8 --load-format dummy \
    --disable-cuda-graph --batch-size 64 --input-len 1024 --output-len 40 2>&1 \
    | grep -E "^  [A-Za-z_]|gpu__time_duration|Invocations|rror" | head -200 >> $Q
  el ncu-b64
fi
