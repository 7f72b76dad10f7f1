"""Train a small PyTorch or Keras model and export it to ONNX the way the README tells data scientists
to (``torch.onnx.export``; Keras ``model.export`` then ``python -m tf2onnx.convert``).

Run with the frameworks environment's Python (``.venv-frameworks``, made by ``make frameworks``):
PyTorch and TensorFlow are where data scientists train, not part of the platform's environment,
which only ever sees the ONNX file. Usage::

    python tests/framework_export.py {pytorch|keras} data.npz model.onnx

``data.npz`` holds ``X`` (float32 [n, k]) and ``y`` (0/1 [n]). Prints one JSON line: the framework
version and the training loss.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def pytorch(X: np.ndarray, y: np.ndarray, out: Path) -> dict[str, object]:
    import torch

    torch.manual_seed(0)
    n = X.shape[1]

    class Net(torch.nn.Module):  # type: ignore[misc]  # torch is not installed where mypy runs
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(X.mean(0), dtype=torch.float32))
            self.register_buffer("std", torch.tensor(X.std(0) + 1e-6, dtype=torch.float32))
            self.body = torch.nn.Sequential(torch.nn.Linear(n, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.body((x - self.mean) / self.std))

    net = Net()
    xs, ys = torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32).reshape(-1, 1)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    loss_fn = torch.nn.BCELoss()
    for _ in range(300):
        opt.zero_grad()
        loss = loss_fn(net(xs), ys)
        loss.backward()
        opt.step()
    net.eval()
    torch.onnx.export(
        net,
        torch.zeros(1, n),
        str(out),
        input_names=["features"],
        output_names=["probabilities"],
        dynamic_axes={"features": {0: "batch"}, "probabilities": {0: "batch"}},
        # torch >= 2.9 exports with dynamo and writes the weights to a side file by default; intake
        # takes one self-contained file (external data is refused).
        external_data=False,
    )
    return {"framework": f"torch {torch.__version__}", "loss": float(loss.detach())}


def keras(X: np.ndarray, y: np.ndarray, out: Path) -> dict[str, object]:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    norm = tf.keras.layers.Normalization()
    norm.adapt(X)
    model = tf.keras.Sequential(
        [
            tf.keras.Input((X.shape[1],), name="features"),
            norm,
            tf.keras.layers.Dense(16, activation="relu"),
            tf.keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    history = model.fit(X, y, epochs=8, batch_size=256, verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "saved_model"
        model.export(str(saved))
        subprocess.run(
            [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved), "--output", str(out)],
            check=True,
            capture_output=True,
        )
    return {"framework": f"tensorflow {tf.__version__}", "loss": float(history.history["loss"][-1])}


if __name__ == "__main__":
    kind, data, target = sys.argv[1], np.load(sys.argv[2]), Path(sys.argv[3])
    X, y = data["X"].astype(np.float32), data["y"].astype(np.float32)
    print(json.dumps({"pytorch": pytorch, "keras": keras}[kind](X, y, target)))
