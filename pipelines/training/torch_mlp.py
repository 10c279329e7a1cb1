"""PyTorch MLP trainer.

Design: the MLP reuses the shared sklearn preprocessing (median-imputed, standardised float32 numerics and
one-hot categoricals), fitted on the training split; the torch module only sees its float32 matrix. The ONNX
export composes the skl2onnx graph of that fitted preprocessor in front of the exported torch module (see
`pipelines.export.onnx_export`), so the served graph takes the same raw columns as every other model kind and
no second implementation of the preprocessing exists to drift out of sync.

Reproducibility: parameter init, dropout and batch order all draw from torch's generator, seeded from the
config inside `torch.random.fork_rng`, so training is repeatable without clobbering the caller's RNG state.
On CPU two runs give identical weights; on CUDA, cuBLAS may reorder reductions between runs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike
from sklearn.compose import ColumnTransformer
from torch import nn

from pipelines.export.onnx_export import torch_mlp_to_onnx
from pipelines.features import FeatureSpec, prepare_frame
from pipelines.training.base import TrainedModel, Trainer, checked_labels, fit_preprocessor
from pipelines.training.config import MLPConfig, MLPParams

_PREDICT_CHUNK_ROWS = 65_536


def resolve_device(requested: str) -> torch.device:
    """ "auto" -> cuda when available, else cpu; an explicit "cuda" on a host without one is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config asks for device 'cuda' but torch sees no CUDA device on this host")
    return torch.device(requested)


class MLPNet(nn.Module):
    """Preprocessed feature matrix [batch, n_features] -> positive-class probability [batch, 1]."""

    def __init__(self, n_features: int, hidden_sizes: list[int], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(features))


class TorchMLPModel(TrainedModel):
    """The fitted preprocessor + MLP; `module` is what MLflow's pytorch flavor logs. Kept on CPU after fit."""

    flavor = "pytorch"

    def __init__(
        self,
        preprocessor: ColumnTransformer,
        module: MLPNet,
        spec: FeatureSpec,
        config: MLPConfig,
        fit_summary: dict[str, float],
    ) -> None:
        super().__init__(spec, config, fit_summary)
        self.preprocessor = preprocessor
        self.module = module

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        matrix = torch.from_numpy(self.preprocessor.transform(prepare_frame(frame, self.spec)))
        with torch.inference_mode():
            chunks = [self.module(chunk) for chunk in matrix.split(_PREDICT_CHUNK_ROWS)]
        return torch.cat(chunks).numpy()[:, 0].astype(np.float64)

    def to_onnx(self) -> bytes:
        return torch_mlp_to_onnx(self.preprocessor, self.module, self.spec)


class MLPTrainer(Trainer):
    kind = "mlp"
    config: MLPConfig

    def fit(self, X_train: pd.DataFrame, y_train: ArrayLike, X_val: pd.DataFrame, y_val: ArrayLike) -> TorchMLPModel:
        train_labels, val_labels = checked_labels(X_train, y_train, X_val, y_val)
        preprocessor, train_matrix, val_matrix = fit_preprocessor(self.spec, X_train, X_val, scale_numeric=True)
        device = resolve_device(self.config.device)
        with torch.random.fork_rng():
            torch.manual_seed(self.config.seed)
            module = MLPNet(train_matrix.shape[1], self.config.params.hidden_sizes, self.config.params.dropout)
            fit_summary = _train(
                module.to(device),
                _tensors(train_matrix, train_labels, device),
                _tensors(val_matrix, val_labels, device),
                self.config.params,
            )
        return TorchMLPModel(preprocessor, module.cpu().eval(), self.spec, self.config, fit_summary)


def _tensors(matrix: np.ndarray, labels: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    features = torch.from_numpy(matrix).to(device)
    targets = torch.from_numpy(labels.astype(np.float32)).unsqueeze(1).to(device)
    return features, targets


def _train(
    module: MLPNet,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    params: MLPParams,
) -> dict[str, float]:
    """Mini-batch AdamW; keep the weights of the epoch with the lowest validation log loss."""
    features, targets = train
    optimizer = torch.optim.AdamW(module.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    best_loss, best_epoch, best_state = math.inf, 0, _state_copy(module)
    epoch = 0
    for epoch in range(1, params.max_epochs + 1):
        module.train()
        for batch in torch.randperm(len(features)).split(params.batch_size):
            batch = batch.to(features.device)
            optimizer.zero_grad()
            loss_fn(module.logits(features[batch]), targets[batch]).backward()
            optimizer.step()
        val_loss = _log_loss(module, val, loss_fn)
        if val_loss < best_loss:
            best_loss, best_epoch, best_state = val_loss, epoch, _state_copy(module)
        elif epoch - best_epoch >= params.patience:
            break
    module.load_state_dict(best_state)
    return {"best_epoch": float(best_epoch), "epochs_run": float(epoch), "best_val_log_loss": best_loss}


def _log_loss(module: MLPNet, data: tuple[torch.Tensor, torch.Tensor], loss_fn: nn.Module) -> float:
    features, targets = data
    module.eval()
    with torch.inference_mode():
        return float(loss_fn(module.logits(features), targets))


def _state_copy(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}
