"""Where inference speed comes from, measured: batch size, precision, compilation,
device, memory, and the sparse formats the CF models lean on.

- :mod:`.precision` -- a module prepared at fp32/bf16/fp16/int8, compiled or not;
- :mod:`.benchmark` -- workloads (a model's scoring path) and the grid benchmark:
  latency, throughput, peak memory and answers changed against fp32;
- :mod:`.batch_size` -- the largest batch that fits a memory budget;
- :mod:`.sparse_formats` -- CSR vs CSC vs COO timings;
- :mod:`.timing` -- the benchmark timers.

Speed may import models (to benchmark their scoring paths), metrics, data and devices;
it is independent of serving and evaluation.
"""
