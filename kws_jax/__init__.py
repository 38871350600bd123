"""kws_jax: keyword spotting in JAX/Flax, from audio to microcontroller.

Data flows one way: audio -> ops (features) -> data -> models -> train/evaluate
-> export -> compile -> stream. Each stage is a module with a small public surface.
"""

__version__ = "0.1.0"
