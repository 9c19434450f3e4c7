"""The Recommender's transformer pass on ONNX Runtime: the user states `SASRec.encode` gives,
equal to float rounding (a few 1e-6 in the scores), in less time on one CPU thread
(`attnrec bench --engines`; docs/performance.md, "Engines").

Only the transformer goes into the graph (`SASRec.encode_vectors`): the history's item
vectors arrive gathered from the item table in torch, so the graph is the same size for ten
thousand items or ten million, and exporting it takes seconds. It is exported when a replica
loads a checkpoint (torch.onnx's exporter), with the batch and the history length dynamic,
and never written to disk. Scoring the catalogue, two-stage retrieval, masks and top-k stay
in torch. Explanations stay on torch too: Captum needs its gradients.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from attnrec.model.config import ENGINES
from attnrec.model.sasrec import SASRec

log = logging.getLogger(__name__)

Encode = Callable[[torch.Tensor, "list[torch.Tensor] | None"], torch.Tensor]  # (seq (B, T), user codes) -> (B, D)


class _Transformer(nn.Module):
    """`SASRec.encode_vectors` as a module whose inputs are all tensors, for the exporter."""

    def __init__(self, model: SASRec):
        super().__init__()
        self.model = model

    def forward(self, items: torch.Tensor, seq: torch.Tensor, *user: torch.Tensor) -> torch.Tensor:
        return self.model.encode_vectors(items, seq, list(user) or None)


class OnnxEncoder:
    """`model.encode` on an ONNX Runtime session: call it as encode(seq, user)."""

    def __init__(self, model: SASRec, session, names: list[str]):
        self.model, self.session, self.names = model, session, names

    def __call__(self, seq: torch.Tensor, user: list[torch.Tensor] | None = None) -> torch.Tensor:
        with torch.inference_mode():
            items = self.model.all_item_vectors()[seq]  # (B, T, D)
        if user is None:  # an unknown user: every feature missing
            user = _unknown_users(self.model, len(seq))
        inputs = [items, seq, *user]
        feeds = {name: np.ascontiguousarray(t.numpy()) for name, t in zip(self.names, inputs)}
        return torch.from_numpy(self.session.run(None, feeds)[0])


def _unknown_users(model: SASRec, batch: int) -> list[torch.Tensor]:
    """User codes of `batch` users whose every feature is missing (code 0); [] without user features."""
    return [torch.zeros((batch, spec.max_values) if spec.multi else (batch,), dtype=torch.long)
            for spec in model.config.user_features]


def export_encoder(model: SASRec, threads: int) -> OnnxEncoder:
    """Export the model's transformer and open it on ONNX Runtime with `threads` threads.
    Raises whatever the exporter or the runtime raises; `encoder_for` is the forgiving way."""
    import onnxruntime as ort

    config = model.config
    batch, length = 2, max(2, config.max_len)  # sizes of 1 would be fixed into the graph
    seq = torch.arange(1, batch * length + 1).reshape(batch, length) % config.n_items + 1
    seq[0, :1] = 0  # padding in the example, as left-padded batches have
    user = _unknown_users(model, batch)
    with torch.inference_mode():
        items = model.all_item_vectors()[seq].clone()
    names = ["items", "seq"] + [f"user_{i}" for i in range(len(user))]
    B, T = torch.export.Dim("batch", min=1, max=1 << 16), torch.export.Dim("length", min=1, max=config.max_len)
    shapes = [{0: B, 1: T}, {0: B, 1: T}] + ([tuple({0: B} for _ in user)] if user else [])  # *user: one entry
    with warnings.catch_warnings(), _quiet("torch.onnx", "onnxscript"), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(_Transformer(model).eval(), (items, seq, *user), input_names=names,
                                    output_names=["state"], dynamic_shapes=shapes, dynamo=True, verbose=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3  # errors only: its warnings name graph internals, nothing to act on
    session = ort.InferenceSession(program.model_proto.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return OnnxEncoder(model, session, names)


def encoder_for(model: SASRec, engine: str, threads: int | None = None) -> OnnxEncoder | None:
    """The encoder a replica ranks with: an OnnxEncoder when `engine` is "onnxruntime" and the
    model is on the CPU, else None (rank with `model.encode`). An export that fails falls back
    to torch with a log line that says why; the replica serves either way."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "torch":
        return None
    if model.item_emb.weight.device.type != "cpu":
        log.info("the model is on %s: ranking with torch (ONNX Runtime serves CPU replicas)",
                 model.item_emb.weight.device)
        return None
    started = time.perf_counter()
    try:
        encoder = export_encoder(model, threads or torch.get_num_threads())
    except Exception as e:  # noqa: BLE001 (any exporter or runtime failure: torch serves the same answers)
        cause = e.__cause__ or e  # the exporter wraps the reason in pages of advice
        log.warning("ONNX Runtime could not take the model (%s: %s); ranking with torch", type(cause).__name__,
                    (str(cause).splitlines() or [""])[0])
        return None
    log.info("ranking with ONNX Runtime (exported in %.1f s)", time.perf_counter() - started)
    return encoder


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """These loggers at ERROR for a while: the exporter reports every step it takes."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
