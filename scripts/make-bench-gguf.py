#!/usr/bin/env python3
# Writes a small GGUF holding only the tensors `serval bench-kernels` times (layer 0's
# q/k/gate/down projections and the token embedding) plus the two metadata keys it
# reads, copied byte for byte from a full model. For hosts that can take a 31 MB file
# but not the whole model (e.g. a device machine): `serval bench-kernels --model-path`.
# Usage: scripts/make-bench-gguf.py FULL.gguf OUT.gguf   (needs llama.cpp's gguf-py;
# set GGUF_PY to its directory if it is not at the default place below)
import sys, struct
import os
sys.path.insert(0, os.environ.get('GGUF_PY', os.path.expanduser('~/.cache/serval/llama.cpp/src/vendor/llama.cpp/gguf-py')))
from gguf import GGUFReader
src, dst = sys.argv[1], sys.argv[2]
names = ["blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.ffn_gate.weight", "blk.0.ffn_down.weight", "token_embd.weight"]
r = GGUFReader(src)
raw = open(src, 'rb').read()
ts = {t.name: t for t in r.tensors}
def s(x): b = x.encode(); return struct.pack('<Q', len(b)) + b
out = bytearray(b'GGUF' + struct.pack('<IQQ', 3, len(names), 2))
out += s('general.architecture') + struct.pack('<I', 8) + s('llama')
out += s('llama.block_count') + struct.pack('<II', 4, 30)
off = 0; datas = []
for n in names:
    t = ts[n]
    dims = [int(d) for d in t.shape]
    out += s(n) + struct.pack('<I', len(dims)) + b''.join(struct.pack('<Q', d) for d in dims) + struct.pack('<IQ', int(t.tensor_type), off)
    d = raw[t.data_offset:t.data_offset + t.n_bytes]
    datas.append(d); off += len(d); off = (off + 31) // 32 * 32
out += b'\0' * ((-len(out)) % 32)
for d in datas:
    out += d; out += b'\0' * ((-len(out)) % 32)
open(dst, 'wb').write(out)
print(dst, len(out))
