#!/usr/bin/env python3
"""The peer for `serval bench-allreduce --device cuda` (issue 22): PyTorch's NCCL all-reduce of fp32
tensors between RANKS processes on one GPU each, timed the same way (5 warm-up calls, then ITERATIONS
in place between two CUDA events), bus bandwidth as nccl-tests reports it (bytes / time * 2(n-1)/n).
Usage: python3 benchmarks/torch-allreduce.py [RANKS] [FLOATS,...]   (env ITERATIONS=20)
Run it in the same device call as `serval bench-allreduce --device cuda --ranks RANKS`."""
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank, ranks, sizes, iterations, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NCCL_NVLS_ENABLE="0")
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=ranks)
    for n in sizes:
        x = torch.full((n,), float(rank + 1), device="cuda")
        dist.all_reduce(x)
        ok = bool(torch.all(x == ranks * (ranks + 1) / 2))
        for _ in range(5):
            dist.all_reduce(x)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        dist.barrier()
        start.record()
        for _ in range(iterations):
            dist.all_reduce(x)
        end.record()
        end.synchronize()
        seconds = start.elapsed_time(end) / 1000 / iterations
        algbw = n * 4 / seconds
        if rank == 0:
            print(f"  {n:10d} floats ({n * 4 / 2**20:8.2f} MiB): {seconds * 1e6:9.1f} us, algbw {algbw / 1e9:7.2f} GB/s, "
                  f"busbw {algbw * 2 * (ranks - 1) / ranks / 1e9:7.2f} GB/s, check {'exact' if ok else 'FAILED'}")
    dist.destroy_process_group()


if __name__ == "__main__":
    ranks = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    sizes = [int(s) for s in (sys.argv[2] if len(sys.argv) > 2 else "262144,16777216,268435456").split(",")]
    iterations = int(os.environ.get("ITERATIONS", "20"))
    print(f"torch {torch.__version__} nccl all-reduce (fp32 sum, in place), {ranks} processes, {iterations} calls per size:")
    mp.spawn(worker, args=(ranks, sizes, iterations, 29500 + os.getpid() % 1000), nprocs=ranks)
