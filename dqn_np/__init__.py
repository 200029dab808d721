"""dqn_np: a small neural network with a hand-written backward pass, its losses, optimizers and gradient checks."""

from dqn_np.layers import Dueling, Layer, Linear, ReLU, relu_grad
from dqn_np.losses import huber, mae, mse, td_loss
from dqn_np.mlp import MLP
from dqn_np.optim import SGD, Adam, clip_grad_norm

__all__ = [
    "MLP", "Layer", "Linear", "Dueling", "ReLU", "relu_grad", "mse", "mae", "huber", "td_loss", "SGD", "Adam",
    "clip_grad_norm",
]
__version__ = "0.1.0"
