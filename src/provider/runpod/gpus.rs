//! RunPod GPU ids in the GPU vocabulary (`placement.gpu`), from RunPod's GPU type list
//! (`references/gpu-types.mdx`, 2026-02-12, as quoted in runctl's provider reference). Pods
//! come in 1 to 8 GPUs (the catalog's `maxCount` per id is checked at price time); RunPod does
//! not publish a pod's vCPUs and memory per offer. `NVIDIA H100 NVL` (94 GB) has no vocabulary
//! name: name it with `placement.gpuType`.

use crate::crd::GpuModel::{self, *};
use crate::provider::gpus::Shape;

const COUNTS: &[u32] = &[1, 2, 3, 4, 5, 6, 7, 8];

const fn gpu(name: &'static str, model: GpuModel) -> Shape {
    Shape::gpu_type(name, model, COUNTS)
}

/// The table.
pub const SHAPES: &[Shape] = &[
    gpu("NVIDIA B200", B200),
    gpu("NVIDIA H200", H200),
    gpu("NVIDIA H100 80GB HBM3", H100),
    gpu("NVIDIA H100 PCIe", H100),
    gpu("NVIDIA A100 80GB PCIe", A100x80),
    gpu("NVIDIA A100-SXM4-80GB", A100x80),
    gpu("NVIDIA L40S", L40S),
    gpu("NVIDIA RTX A6000", RtxA6000),
    gpu("NVIDIA GeForce RTX 4090", Rtx4090),
];
