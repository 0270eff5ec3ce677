//! EC2's GPU instance types in the GPU vocabulary (`placement.gpu`): model, GPU count, vCPUs and
//! memory (GiB) of each. From AWS's accelerated-computing instance type pages as compiled by the
//! runctl authors (2026-12); `docs/providers/gpus.md` lists them. A type missing here can still
//! be named with `placement.instanceType`.

use crate::crd::GpuModel::{self, *};
use crate::provider::gpus::Shape;

const fn it(name: &'static str, model: GpuModel, gpus: u32, vcpus: u32, gib: u32) -> Shape {
    Shape {
        name,
        instance_type: true,
        model,
        counts: match gpus {
            1 => &[1],
            4 => &[4],
            _ => &[8],
        },
        size: Some((vcpus, gib)),
    }
}

/// The table.
pub const SHAPES: &[Shape] = &[
    it("g4dn.xlarge", T4, 1, 4, 16),
    it("g4dn.2xlarge", T4, 1, 8, 32),
    it("g4dn.4xlarge", T4, 1, 16, 64),
    it("g4dn.8xlarge", T4, 1, 32, 128),
    it("g4dn.16xlarge", T4, 1, 64, 256),
    it("g4dn.12xlarge", T4, 4, 48, 192),
    it("g4dn.metal", T4, 8, 96, 384),
    it("g5.xlarge", A10G, 1, 4, 16),
    it("g5.2xlarge", A10G, 1, 8, 32),
    it("g5.4xlarge", A10G, 1, 16, 64),
    it("g5.8xlarge", A10G, 1, 32, 128),
    it("g5.16xlarge", A10G, 1, 64, 256),
    it("g5.12xlarge", A10G, 4, 48, 192),
    it("g5.24xlarge", A10G, 4, 96, 384),
    it("g5.48xlarge", A10G, 8, 192, 768),
    it("g6.xlarge", L4, 1, 4, 16),
    it("g6.2xlarge", L4, 1, 8, 32),
    it("g6.4xlarge", L4, 1, 16, 64),
    it("g6.8xlarge", L4, 1, 32, 128),
    it("g6.16xlarge", L4, 1, 64, 256),
    it("g6.12xlarge", L4, 4, 48, 192),
    it("g6.24xlarge", L4, 4, 96, 384),
    it("g6.48xlarge", L4, 8, 192, 768),
    it("g6e.xlarge", L40S, 1, 4, 32),
    it("g6e.2xlarge", L40S, 1, 8, 64),
    it("g6e.4xlarge", L40S, 1, 16, 128),
    it("g6e.8xlarge", L40S, 1, 32, 256),
    it("g6e.16xlarge", L40S, 1, 64, 512),
    it("g6e.12xlarge", L40S, 4, 48, 384),
    it("g6e.24xlarge", L40S, 4, 96, 768),
    it("g6e.48xlarge", L40S, 8, 192, 1536),
    it("p4d.24xlarge", A100x40, 8, 96, 1152),
    it("p4de.24xlarge", A100x80, 8, 96, 1152),
    it("p5.48xlarge", H100, 8, 192, 2048),
    it("p5e.48xlarge", H200, 8, 192, 2048),
    it("p5en.48xlarge", H200, 8, 192, 2048),
];
