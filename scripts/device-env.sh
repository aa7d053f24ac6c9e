# Sourced by the device scripts (run on the GPU machine, which has no Swift): finds libnvrtc.so.13,
# libcublasLt.so.13 and libnccl.so.2 (ldconfig, then the nvidia Python packages, then a file search) and
# exports SERVAL_CUDA_LIB_DIR (unless already set), SERVAL_NCCL_LIB_DIR and SERVAL_CUDA_CACHE (/tmp/svcache
# unless set). With DEVICE_LIB_LOG=FILE each library's path, or "not found", is appended to FILE.
_sv_dirs=""
for _sv_n in libnvrtc.so.13 libcublasLt.so.13 libnccl.so.2; do
  _sv_p=$(ldconfig -p 2>/dev/null | grep -m1 "$_sv_n" | awk '{print $NF}')
  [ -z "$_sv_p" ] && _sv_p=$(python3 -c "import nvidia, os; print(next((os.path.join(r, '$_sv_n') for d in nvidia.__path__ for r, _, fs in os.walk(d) if '$_sv_n' in fs), ''))" 2>/dev/null)
  [ -z "$_sv_p" ] && _sv_p=$(find / -name "$_sv_n" -not -path '/proc/*' 2>/dev/null | head -1)
  [ -n "$_sv_p" ] && _sv_dirs="$_sv_dirs:$(dirname "$_sv_p")"
  [ -n "${DEVICE_LIB_LOG:-}" ] && echo "$_sv_n: ${_sv_p:-not found}" >> "$DEVICE_LIB_LOG"
done
export SERVAL_CUDA_LIB_DIR=${SERVAL_CUDA_LIB_DIR:-${_sv_dirs#:}} SERVAL_NCCL_LIB_DIR=${_sv_dirs#:}
export SERVAL_CUDA_CACHE=${SERVAL_CUDA_CACHE:-/tmp/svcache}
unset _sv_dirs _sv_n _sv_p
