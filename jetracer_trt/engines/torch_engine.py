"""PyTorch backend: a checkpoint (``.pt``/``.pth``) run eagerly, or an AOTInductor package (``.pt2``) written by
``jetracer-trt convert --backend torch``.

The model contract comes from the checkpoint (``model_contract``; the default, with a warning, for a bare state
dict; trt_pose's bare ``resnet18_baseline_att`` weights get the pose contract, ``load_network``) or from the
package's metadata. Road-following models give one (N, outputs) tensor, pose models a tuple (cmap, paf): each output
tensor has its own preallocated buffers (``InferenceEngine.output_shapes``).

* CPU: PyTorch eager FP32 (or an FP32 CPU package), the benchmark's "PyTorch eager FP32" baseline. Frames go through
  ``preprocess.Preprocessor`` like every CPU backend; the model reads its buffer through ``torch.from_numpy`` (no
  copy) and its outputs are copied into a preallocated numpy array.
* CUDA: FP16 (default) or FP32, channels_last, on the engine's own CUDA stream. Frames are staged as uint8 in pinned
  memory, uploaded and normalized on the GPU (``cuda_stage.CudaFrameStager``), as on every CUDA backend; the model
  and the copy of its outputs to pinned host memory are captured into one CUDA graph per batch size (after eager
  warm-up runs) and replayed, then the stream is synchronized once for the result.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..contract import contract_from_record
from ..errors import JetracerError
from .base import PRECISIONS, InferenceEngine

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pt", ".pth")
PACKAGE_SUFFIX = ".pt2"
EAGER_WARMUP_RUNS = 2  # eager runs before a CUDA graph is captured (cuDNN picks its algorithms, lazy inits happen)
# keys of the metadata that torch_aot.convert stores in an AOTInductor package (and contract.CONTRACT_KEY)
META_PRECISION, META_CHANNELS_LAST = "jetracer_precision", "jetracer_channels_last"


class TorchEngine(InferenceEngine):
    """PyTorch on CPU (eager FP32) or CUDA (FP16/FP32, channels_last, CUDA graphs); see the module docstring."""

    name = "torch"

    def __init__(self, model_path: str | os.PathLike, max_batch: int = 1, precision: str | None = None,
                 device: str | None = None, threads: int = 0, cuda_graphs: bool = True,
                 channels_last: bool = True) -> None:
        """``precision``: fp32 or fp16 (default fp16 on CUDA, fp32 on CPU; a ``.pt2`` package has its own).
        ``device``: "cpu", "cuda" or "cuda:N" (default: CUDA when available). ``threads``: intra-op CPU threads
        (0: PyTorch's default). ``cuda_graphs``: capture one graph per batch size and replay it.
        ``channels_last``: NHWC memory layout on CUDA (what cuDNN's FP16 convolutions prefer)."""
        super().__init__(max_batch)
        import torch

        self._torch = torch
        path = Path(model_path)
        if not path.is_file():
            raise JetracerError(f"model file not found: {path}" if not path.exists() else f"{path} is not a file")
        if path.suffix not in CHECKPOINT_SUFFIXES + (PACKAGE_SUFFIX,):
            raise JetracerError(f"the torch backend loads a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}) or an "
                                f"AOTInductor package ({PACKAGE_SUFFIX}), not {path.name}")
        if precision is not None and precision not in PRECISIONS:
            raise JetracerError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        if precision == "int8":
            raise JetracerError("the torch backend has no INT8; for INT8 use --backend onnxruntime on a CPU "
                                "(a model from `jetracer-trt convert --backend onnxruntime --precision int8`) or "
                                "--backend tensorrt on a GPU")
        self._graphs_wanted = bool(cuda_graphs)
        self._graphs: dict[int, object] = {}
        self._graph_pool = None
        if path.suffix == PACKAGE_SUFFIX:
            model, device_obj, precision, channels_last = self._load_package(path, device, precision)
        else:
            device_obj = self._device(device)
            precision = precision or ("fp16" if device_obj.type == "cuda" else "fp32")
            self._check_precision(precision, device_obj)
            model, self.contract = self._load_checkpoint(path, device_obj, precision, channels_last)
        self.model = model
        self.precision = precision
        self._device_obj = device_obj
        if device_obj.type == "cuda":
            self._init_cuda(device_obj, precision, channels_last)
        else:
            self._init_cpu(threads)

    # -- loading ------------------------------------------------------------------------------------------------
    def _device(self, device: str | None):
        torch = self._torch
        try:
            chosen = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        except (RuntimeError, TypeError):
            raise JetracerError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
        if chosen.type not in ("cpu", "cuda"):
            raise JetracerError(f"the torch backend runs on cpu or cuda, not {chosen.type}")
        if chosen.type == "cuda":
            if not torch.cuda.is_available():
                raise JetracerError("device cuda was asked for, but PyTorch sees no CUDA GPU here; use device cpu")
            index = torch.cuda.current_device() if chosen.index is None else chosen.index
            if index >= torch.cuda.device_count():
                raise JetracerError(f"no GPU {index}: PyTorch sees {torch.cuda.device_count()}")
            chosen = torch.device("cuda", index)
        return chosen

    @staticmethod
    def _check_precision(precision: str, device) -> None:
        if precision == "fp16" and device.type == "cpu":
            raise JetracerError("the torch backend runs FP16 only on a CUDA GPU; on a CPU use precision fp32 "
                                "(or --backend onnxruntime, and its INT8 model for speed)")

    def _load_checkpoint(self, path: Path, device, precision: str, channels_last: bool):
        model, contract = load_network(path)
        if device.type == "cuda":
            model = model.to(device, dtype=self._dtype(precision))
            if channels_last:
                model = model.to(memory_format=self._torch.channels_last)
        return model, contract

    def _load_package(self, path: Path, device: str | None, precision: str | None):
        """(model, device, precision, channels_last) of an AOTInductor package; the package fixes all but the GPU."""
        torch = self._torch
        wanted = self._device(device) if device else None

        def load(device_index: int):
            try:
                # single-threaded runner: what a CUDA graph capture needs, and one engine is used by one thread
                return torch._inductor.aoti_load_package(str(path), run_single_threaded=True,
                                                         device_index=device_index)
            except Exception as exc:  # noqa: BLE001 - the C++ loader raises RuntimeError and friends
                text = str(exc).strip().splitlines()
                raise JetracerError(f"cannot load AOTInductor package {path}: {text[0][:300] if text else exc!r}; "
                                    "convert it again on this machine (jetracer-trt convert --backend torch)") from None

        index = wanted.index if wanted is not None and wanted.type == "cuda" else -1
        model = load(index)
        meta = model.get_metadata()
        package_device = meta.get("AOTI_DEVICE_KEY", "cpu")
        package_precision = meta.get(META_PRECISION, "fp32")
        if wanted is None:
            wanted = self._device(package_device)
        if wanted.type != package_device:
            raise JetracerError(f"{path} was compiled for {package_device}, not {wanted.type}; convert it again "
                                f"on this machine (jetracer-trt convert --backend torch)")
        if precision is not None and precision != package_precision:
            raise JetracerError(f"{path} is a {package_precision} package, not {precision}; convert it again with "
                                f"--precision {precision}")
        self._check_precision(package_precision, wanted)
        self.contract = contract_from_record(meta, path)
        return model, wanted, package_precision, meta.get(META_CHANNELS_LAST, "0") == "1"

    def _dtype(self, precision: str):
        return self._torch.float16 if precision == "fp16" else self._torch.float32

    # -- CPU: PyTorch eager FP32 ---------------------------------------------------------------------------------
    def _init_cpu(self, threads: int) -> None:
        from ..preprocess import Preprocessor

        torch = self._torch
        if threads > 0:
            torch.set_num_threads(threads)  # process-wide: PyTorch has no per-model setting
        self.device = "cpu"
        self.preprocess = Preprocessor(self.contract, max_batch=self.max_batch)
        self._input = torch.from_numpy(self.preprocess.output)  # the same memory: staging writes the model's input
        host = self.host_outputs()
        self.bind_outputs(host)
        self._outputs_t = [torch.from_numpy(buffer) for buffer in host.values()]  # the same memory again

    # -- CUDA: FP16/FP32, own stream, CUDA graphs ----------------------------------------------------------------
    def _init_cuda(self, device, precision: str, channels_last: bool) -> None:
        from .cuda_stage import CudaFrameStager

        torch = self._torch
        if precision == "fp32":
            # cuDNN convolutions default to TF32 on Ampere and later: about 1e-3 off, outside FP32's tolerance
            torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN time its algorithms once, at warm-up
        self.device = f"{device} {torch.cuda.get_device_name(device)}"
        self.stream = torch.cuda.Stream(device)
        self.preprocess = CudaFrameStager(self.contract, self.max_batch, dtype=self._dtype(precision), device=device,
                                          channels_last=channels_last, stream=self.stream)
        shapes = self.output_shapes().values()
        self._outputs_dev = [torch.empty(shape, dtype=torch.float32, device=device) for shape in shapes]
        self._outputs_host = [torch.empty(shape, dtype=torch.float32, pin_memory=True) for shape in shapes]
        self.bind_outputs({name: host.numpy() for name, host in zip(self.output_shapes(), self._outputs_host,
                                                                      strict=True)})
        self._eager_runs: dict[int, int] = {}

    def _forward_cuda(self, n: int) -> None:
        """The model on the staged input, its outputs to pinned host memory: enqueued on the current stream (and so
        capturable)."""
        outputs = self._model_outputs(self.preprocess.input[:n])
        for result, device_out, host_out in zip(outputs, self._outputs_dev, self._outputs_host, strict=True):
            device_out[:n].copy_(result)  # to float32 (and plain NCHW from channels_last); the host gets float32
            host_out[:n].copy_(device_out[:n], non_blocking=True)

    def _model_outputs(self, x) -> tuple:
        """The model's output tensors on ``x``, in the contract's order: a pose network (and its package) gives a
        tuple (cmap, paf), a road-following one a single tensor."""
        out = self.model(x)
        out = (out,) if isinstance(out, self._torch.Tensor) else tuple(out)
        if len(out) != len(self.contract.output_tensors):
            raise JetracerError(f"the model gave {len(out)} output tensors; its contract names "
                                f"{', '.join(self.contract.output_tensors)}")
        return out

    def _capture(self, n: int):
        torch = self._torch
        self.stream.synchronize()
        if self._graph_pool is None:
            self._graph_pool = torch.cuda.graph_pool_handle()  # one pool: graphs of each batch size never overlap
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._graph_pool, stream=self.stream):
            self._forward_cuda(n)
        self._graphs[n] = graph
        log.debug("captured a CUDA graph for batches of %d", n)
        return graph

    # -- the model step ------------------------------------------------------------------------------------------
    def _execute(self, n: int) -> dict[str, np.ndarray]:
        torch = self._torch
        if self._device_obj.type != "cuda":
            with torch.inference_mode():
                for result, out in zip(self._model_outputs(self._input[:n]), self._outputs_t, strict=True):
                    out[:n].copy_(result)
            return self.output_views(n)
        with torch.cuda.stream(self.stream), torch.inference_mode():
            graph = self._graphs.get(n)
            if graph is not None:
                graph.replay()  # on the input staged last (run_model reruns it)
            elif self._graphs_wanted and self._eager_runs.get(n, 0) >= EAGER_WARMUP_RUNS:
                self._capture(n).replay()
            else:
                self._forward_cuda(n)
                self._eager_runs[n] = self._eager_runs.get(n, 0) + 1
        self.stream.synchronize()  # the one host synchronisation per call
        return self.output_views(n)

    def close(self) -> None:
        """Drops the CUDA graphs and the model, so their memory can be reused."""
        self._graphs.clear()
        self.model = None


def load_network(path: str | os.PathLike):
    """(FP32 network in eval mode on the CPU, its model contract) of a checkpoint: a road-following one
    (``model.load_checkpoint``: RUN/best.pt, a JetRacer ResNet18 state dict), or a pose one, ours or trt_pose's
    ``resnet18_baseline_att`` weights (``pose.checkpoint.load_pose_checkpoint``). JetracerError for a bad file."""
    from ..model import load_checkpoint, load_torch_file
    from ..pose.checkpoint import is_pose_checkpoint, load_pose_checkpoint
    from ..pose.network import trt_pose_variant

    path = Path(path)
    data = load_torch_file(path)
    if is_pose_checkpoint(data) or (isinstance(data, dict) and trt_pose_variant(data) is not None):
        model, _, contract = load_pose_checkpoint(path)
        return model, contract
    model, record = load_checkpoint(path)
    return model, contract_from_record(record, path)
