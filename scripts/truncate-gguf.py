import sys, gguf, numpy as np
# Writes the first N blocks of a llama GGUF (token_embd Q8_0 requantized to Q4_1) so a real-weight
# model with the default tokenizer fits the device carry. Usage: truncate-gguf.py SRC DST N (needs pip gguf).
src, dst, keep = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = gguf.GGUFReader(src)
arch = "llama"
w = gguf.GGUFWriter(dst, arch)
for k, f in r.fields.items():
    if k.startswith("GGUF.") or k == "general.architecture": continue
    t = f.types
    if k == f"{arch}.block_count":
        w.add_uint32(k, keep); continue
    if t[0] == gguf.GGUFValueType.ARRAY:
        if t[1] == gguf.GGUFValueType.STRING:
            w.add_array(k, [bytes(f.parts[i]).decode("utf-8", "surrogateescape") for i in f.data])
        else:
            w.add_array(k, [f.parts[i][0].item() for i in f.data])
    elif t[0] == gguf.GGUFValueType.STRING:
        w.add_string(k, bytes(f.parts[f.data[0]]).decode())
    else:
        w.add_key_value(k, f.parts[f.data[0]][0].item(), t[0])
for ti in r.tensors:
    if ti.name.startswith("blk."):
        if int(ti.name.split(".")[1]) >= keep: continue
    if ti.name == "token_embd.weight" and ti.tensor_type == gguf.GGMLQuantizationType.Q8_0:
        f = gguf.quants.dequantize(ti.data, ti.tensor_type)
        qd = gguf.quants.quantize(f, gguf.GGMLQuantizationType.Q4_1)
        w.add_tensor(ti.name, qd, raw_dtype=gguf.GGMLQuantizationType.Q4_1)
        continue
    w.add_tensor(ti.name, np.asarray(ti.data), raw_dtype=ti.tensor_type)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
print("ok")
