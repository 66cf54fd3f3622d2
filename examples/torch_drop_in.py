"""The PyTorch Adam tutorial, unchanged but for the optimizer line: a torch model trained
by numba_adam.torch.Adam (fit y = 2x + 1 with MSE).

    python examples/torch_drop_in.py [--epochs 50] [--torch]

``--torch`` runs the same loop on torch.optim.Adam, to compare the printed losses.
Needs torch (``pip install 'numba-adam[torch]'``).
"""

import argparse

import torch
import torch.nn as nn
import torch.optim as optim

import numba_adam.torch


def main(epochs: int = 50, use_torch: bool = False, seed: int = 0) -> list[list[float]]:
    """Train; returns the weight and bias after every epoch."""
    torch.manual_seed(seed)
    # Define the model
    model = nn.Sequential(
        nn.Linear(1, 1)  # Single linear layer
    )

    # Define the loss function (MSELoss) and Adam optimizer
    criterion = nn.MSELoss()
    if use_torch:
        optimizer = optim.Adam(model.parameters(), lr=0.01)
    else:
        optimizer = numba_adam.torch.Adam(model.parameters(), lr=0.01)   # the one changed line

    trajectory = []
    for epoch in range(epochs):
        # Sample input and target
        x = torch.randn(5, 1)  # 5 samples, 1 feature each
        y = 2 * x + 1  # Linear relationship

        # Forward pass
        output = model(x)
        loss = criterion(output, y)

        # Backward pass and optimization
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        # Print loss every 10 epochs
        if epoch % 10 == 0:
            print(f"Epoch [{epoch}/{epochs}], Loss: {loss.item():.4f}")
        trajectory.append([p.item() for p in model.parameters()])
    return trajectory


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--torch", action="store_true", help="use torch.optim.Adam instead")
    args = parser.parse_args()
    main(args.epochs, args.torch)
