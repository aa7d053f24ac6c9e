#!/bin/bash
# DeepSeek on CUDA in one device call (nothing here has run on a GPU before it). Logs under $OUT:
#   selftest.txt   `serval selftest --device cuda`: every kernel, DeepSeek's MLA attention, MoE router
#                  (3 topk_methods) and routed experts included, against Swift references
#   models.txt     each tiny DeepSeek fixture (HF and GGUF) on the CPU and the GPU backend
#                  (ModelCheck: greedy tokens, teacher-forced top-1 >= 0.98) and generate on both
#   server.txt     a --device cuda server on the v3 fixture: /generate twice (cached tokens), /get_model_info
#   bench.txt      DeepSeek-V2-Lite shapes with dummy bf16 weights, bench-one-batch batch 1 / 32
# Carry: .device-carry/serval.xz (xz of a release `serval`: swift build -c release --product serval).
set -o pipefail
C=.device-carry; B=/tmp/serval; F=Tests/ServalTestSupport/Fixtures/deepseek; T0=$(date +%s)
stamp() { echo "[t=$(( $(date +%s) - T0 ))s]" >> "$1"; }
xz -dc $C/serval.xz > $B; chmod +x $B
source "$(dirname "$0")/device-env.sh"

S=$OUT/selftest.txt
( time timeout 150 $B selftest --device cuda ) > $S 2>&1
stamp $S

M=$OUT/models.txt
for m in v2-lite v2-group v3 v3-fp8 v2-lite/model-f32.gguf v3/model-q8_0.gguf; do
  echo "== $m" >> $M
  timeout 120 $B selftest --device cuda --model-path $F/$m --model-steps 8 2>&1 | grep -E "model check|prompt|FAIL|rror" >> $M
done
for d in cpu cuda; do
  echo "== generate v3 --device $d" >> $M
  timeout 60 $B generate --device $d --model-path $F/v3 --prompt "hello world" --max-new-tokens 16 --temperature 0 >> $M 2>&1
done
stamp $M

V=$OUT/server.txt
$B launch-server --device cuda --model-path $F/v3 --port 31100 > /tmp/ds-srv.log 2>&1 &
SP=$!
for i in $(seq 1 120); do grep -q "fired up" /tmp/ds-srv.log && break; sleep 0.25; done
for i in 1 2; do
  curl -s localhost:31100/generate -H 'content-type: application/json' \
    -d '{"text": "The quick brown fox jumps over the lazy dog", "sampling_params": {"max_new_tokens": 8, "temperature": 0}}' >> $V
  echo >> $V
done
curl -s localhost:31100/get_model_info >> $V; echo >> $V
kill $SP; sleep 1; grep -v "POST\|GET" /tmp/ds-srv.log | tail -15 >> $V
stamp $V

R=$OUT/bench.txt
W=/tmp/v2lite; mkdir -p $W
cat > $W/config.json <<'EOF'
{"architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2", "vocab_size": 102400,
 "hidden_size": 2048, "intermediate_size": 10944, "moe_intermediate_size": 1408, "num_hidden_layers": 27,
 "num_attention_heads": 16, "num_key_value_heads": 16, "n_shared_experts": 2, "n_routed_experts": 64,
 "num_experts_per_tok": 6, "first_k_dense_replace": 1, "moe_layer_freq": 1, "kv_lora_rank": 512,
 "q_lora_rank": null, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
 "topk_method": "greedy", "n_group": 1, "topk_group": 1, "norm_topk_prob": false, "scoring_func": "softmax",
 "routed_scaling_factor": 1.0, "hidden_act": "silu", "max_position_embeddings": 163840, "rms_norm_eps": 1e-6,
 "rope_theta": 10000, "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
 "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}, "tie_word_embeddings": false,
 "torch_dtype": "bfloat16"}
EOF
( time timeout 240 $B bench-one-batch --device cuda --disable-cuda-graph --model-path $W --load-format dummy \
    --batch-size 1 32 --input-len 128 --output-len 16 --result-filename $OUT/bench.jsonl ) >> $R 2>&1
stamp $R
