"""Triton kernels for the inference engine's paged KV cache: store, prefill attention, decode attention.

They run on CUDA tensors (and on CPU tensors only under `TRITON_INTERPRET=1`, which is how the tests run them
without a GPU). `engine/infer/layers/attention.py` holds plain-torch versions with the same signatures and
calls these on CUDA; importing this package needs triton installed.
"""

from engine.infer.kernels.decode_attention import paged_attention_decode
from engine.infer.kernels.kv_store import store_kvcache
from engine.infer.kernels.prefill_attention import paged_attention_prefill

__all__ = ["paged_attention_decode", "paged_attention_prefill", "store_kvcache"]
