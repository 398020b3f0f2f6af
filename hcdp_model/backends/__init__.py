"""Runtime backends: one `Backend` interface and its implementations.

The interface is init_state / step over the explicit streaming cache; the implementations use
torch (eager, optional torch.compile), ONNX Runtime and Torch-TensorRT.

Optional runtimes (onnxruntime, torch_tensorrt) are imported only when their backend is built, so
`import hcdp_model.backends` works on a machine that has neither.
"""
from .base import Backend, BackendError, BACKENDS, State, StepOutput
from .step import ExportStep

__all__ = ["BACKENDS", "Backend", "BackendError", "ExportStep", "State", "StepOutput"]
