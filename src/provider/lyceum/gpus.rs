//! Lyceum run profiles in the GPU vocabulary (`placement.gpu`). A TrainingJob runs as a Lyceum
//! container run, which takes one GPU. Lyceum does not say which A100 or H100 variant its
//! `a100` and `h100` profiles are: mapped to the 80 GB parts, **UNCERTAIN** (docs/providers/gpus.md).

use crate::crd::GpuModel::{self, *};
use crate::provider::gpus::Shape;

const fn profile(name: &'static str, model: GpuModel) -> Shape {
    Shape::gpu_type(name, model, &[1])
}

/// The table.
pub const SHAPES: &[Shape] = &[
    profile("h100", H100),
    profile("a100", A100x80),
    profile("l40s", L40S),
];
