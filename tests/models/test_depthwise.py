"""common.DepthwiseConv (shifted taps) against flax's grouped nn.Conv, the reference."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kws_jax import models
from kws_jax.models.common import DepthwiseConv

CASES = [  # kernel, strides, padding, dilation, input shape (as DS-CNN and BC-ResNet use them)
    ((3, 3), (1, 1), "SAME", (1, 1), (2, 25, 5, 8)),
    ((3, 3), (2, 2), "SAME", (1, 1), (2, 25, 6, 8)),
    ((1, 3), (1, 2), ((0, 0), (1, 1)), (1, 1), (2, 20, 40, 8)),
    ((3, 1), (1, 1), ((4, 4), (0, 0)), (4, 1), (2, 20, 9, 8)),
    ((5, 7), (1, 1), ((2, 2), (0, 0)), (1, 1), (2, 20, 7, 8)),
    ((3, 3), (1, 1), "VALID", (1, 1), (1, 3, 9, 7, 8)),
]


@pytest.mark.parametrize("kernel,strides,padding,dilation,shape", CASES)
def test_depthwise_conv_equals_grouped_conv_values_and_gradients(kernel, strides, padding,
                                                                 dilation, shape):
  x = jax.random.normal(jax.random.key(0), shape)
  reference = nn.Conv(8, kernel, strides=strides, padding=padding, kernel_dilation=dilation,
                      feature_group_count=8)
  ours = DepthwiseConv(8, kernel, strides=strides, padding=padding, kernel_dilation=dilation)
  variables = reference.init(jax.random.key(1), x)
  assert (jax.tree.structure(variables) ==
          jax.tree.structure(ours.init(jax.random.key(1), x)))
  np.testing.assert_allclose(ours.apply(variables, x), reference.apply(variables, x), atol=1e-5)
  loss = lambda module: jax.grad(lambda v: jnp.sum(jnp.sin(module.apply(v, x))))(variables)  # noqa: E731
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4), loss(ours),
               loss(reference))


def test_depthwise_conv_counts_as_a_convolution_in_macs():
  x = jnp.zeros((1, 25, 5, 8))
  module = DepthwiseConv(8, (3, 3))
  variables = module.init(jax.random.key(0), x)
  assert models.count_macs(lambda v, x: module.apply(v, x), variables, x) == 25 * 5 * 8 * 9
