//! The simulated cloud's GPU types in the GPU vocabulary (`placement.gpu`): its price table's
//! `a100` and `h100` GPU types, in any count.

use crate::crd::GpuModel::{self, *};
use crate::provider::gpus::Shape;

const fn gpu(name: &'static str, model: GpuModel) -> Shape {
    Shape::gpu_type(name, model, &[1, 2, 4, 8, 16])
}

/// The table.
pub const SHAPES: &[Shape] = &[gpu("h100", H100), gpu("a100", A100x80)];
