"""The tunables of data-pack streaming: chunk sizes, the float-range probe, small members.

Read at call time as ``limits.NAME`` by every module of the package, so that setting
``leafsub.datasets.NAME`` (the package forwards it here) changes them everywhere.
"""

# Raw bytes per chunk when streaming (write_npy and the range probe).
CHUNK_BYTES = 8 * 1024 * 1024
# A float image pack whose sampled maximum is at most this is taken to be 0..1.
UNIT_RANGE_MAX = 1.0 + 1e-3
# How many rows the float-range probe looks at.
PROBE_ROWS = 256
# Below this many bytes a deflated .npz member is simply decompressed whole for random reads.
SMALL_MEMBER_BYTES = 64 * 1024 * 1024
