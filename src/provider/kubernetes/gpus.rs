//! The cluster's GPUs in the GPU vocabulary (`placement.gpu`): the values NVIDIA's GPU feature
//! discovery puts in the `nvidia.com/gpu.product` node label (the device name with spaces as
//! dashes). Uncertain: a cluster may label differently (another operator, MIG profiles); a
//! `gpuType` no node carries leaves the Pod unscheduled, so the attempt ends for lack of
//! capacity after `scheduleTimeoutSeconds` instead of running on the wrong GPU. Name the value
//! with `placement.gpuType` when the table does not have it.

use crate::crd::GpuModel::{self, *};
use crate::provider::gpus::Shape;

const COUNTS: &[u32] = &[1, 2, 3, 4, 5, 6, 7, 8];

const fn gpu(name: &'static str, model: GpuModel) -> Shape {
    Shape::gpu_type(name, model, COUNTS)
}

/// The table.
pub const SHAPES: &[Shape] = &[
    gpu("NVIDIA-B200", B200),
    gpu("NVIDIA-H200", H200),
    gpu("NVIDIA-H100-80GB-HBM3", H100),
    gpu("NVIDIA-A100-SXM4-80GB", A100x80),
    gpu("NVIDIA-A100-SXM4-40GB", A100x40),
    gpu("NVIDIA-L40S", L40S),
    gpu("NVIDIA-RTX-A6000", RtxA6000),
    gpu("NVIDIA-L4", L4),
    gpu("NVIDIA-A10G", A10G),
    gpu("NVIDIA-GeForce-RTX-4090", Rtx4090),
    gpu("Tesla-T4", T4),
];
