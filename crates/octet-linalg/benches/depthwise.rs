//! Criterion benchmarks of the depthwise and pooling kernels on MediaPipe-like shapes, every
//! instruction set this CPU supports. `cargo bench -p octet-linalg --bench depthwise`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // benchmark code

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use octet_core::fixed_point::QuantizedMultiplier;
use octet_linalg::frame::depthwise::{
    DwPlan, F32DwUkernel, PackedF32Depthwise, PackedQ8Depthwise, Q8DwParams, Q8DwUkernel,
};
use octet_linalg::frame::gemm_f32::F32Clamp;
use octet_linalg::frame::pool::{Pool2d, PoolKind};
use octet_linalg::frame::window::Window2d;

use common::values;

/// A SAME window of a `size` x `size` filter over an `hw` x `hw` image.
fn window(hw: usize, size: usize, stride: usize) -> Window2d {
    common::window(hw, hw, size, stride, true)
}

/// (name, image size, channels, filter, stride): face_landmark's, palm_detection's,
/// hand_landmark's and face_detection's shapes.
const SHAPES: [(&str, usize, usize, usize, usize); 12] = [
    ("96x96x32 5x5", 96, 32, 5, 1),
    ("96x96x32 3x3", 96, 32, 3, 1),
    ("32x32x32 3x3", 32, 32, 3, 1),
    ("96x96x16 3x3", 96, 16, 3, 1),
    ("48x48x32 3x3 s2", 96, 32, 3, 2),
    ("24x24x128 5x5", 24, 128, 5, 1),
    ("12x12x256 5x5", 12, 256, 5, 1),
    ("56x56x144 3x3", 56, 144, 3, 1),
    ("14x14x672 5x5", 14, 672, 5, 1),
    ("7x7x1152 5x5", 7, 1152, 5, 1),
    ("96x96x8 3x3", 96, 8, 3, 1),
    ("112x112x24 3x3", 112, 24, 3, 1),
];

fn depthwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("depthwise");
    for (name, hw, ch, size, stride) in SHAPES {
        let w = window(hw, size, stride);
        let plan = DwPlan::new(&w, ch).unwrap();
        let input = values(w.input_pixels() * ch, 1);
        let weights = values(w.taps() * ch, 2);
        group.throughput(Throughput::Elements(
            (w.output_pixels() * ch * w.taps()) as u64,
        ));
        for kernel in F32DwUkernel::all()
            .into_iter()
            .filter(|k| k.info().taps == 0 || k.info().taps == w.taps())
        {
            let dw = PackedF32Depthwise::with_ukernel(
                kernel,
                plan.clone(),
                &weights,
                None,
                F32Clamp::NONE,
            )
            .unwrap();
            let mut out = vec![0f32; plan.output_len()];
            group.bench_function(format!("{name} {}", kernel.info().name), |b| {
                b.iter(|| dw.run(&input, 0..plan.rows(), &mut out).unwrap())
            });
        }
        let bytes: Vec<u8> = input.iter().map(|v| (v * 100.0) as i8 as u8).collect();
        let qweights: Vec<u8> = weights.iter().map(|v| (v * 127.0) as i8 as u8).collect();
        let multipliers = [QuantizedMultiplier {
            multiplier: 1 << 30,
            shift: -8,
        }];
        let params = Q8DwParams {
            signed: true,
            input_offset: 3,
            weight_offset: 0,
            multipliers: &multipliers,
            output_zero_point: -1,
            min: -128,
            max: 127,
        };
        for kernel in Q8DwUkernel::all()
            .into_iter()
            .filter(|k| k.info().taps == 0 || k.info().taps == w.taps())
        {
            let dw =
                PackedQ8Depthwise::with_ukernel(kernel, plan.clone(), &qweights, None, &params)
                    .unwrap();
            let mut out = vec![0u8; plan.output_len()];
            group.bench_function(format!("{name} {}", kernel.info().name), |b| {
                b.iter(|| dw.run(&bytes, 0..plan.rows(), &mut out).unwrap())
            });
        }
    }
    group.finish();
}

fn pool(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool");
    let w = Window2d {
        stride_h: 2,
        stride_w: 2,
        out_h: 48,
        out_w: 48,
        filter_h: 2,
        filter_w: 2,
        pad_top: 0,
        pad_left: 0,
        ..window(96, 2, 2)
    };
    let ch = 16;
    let plan = DwPlan::new(&w, ch).unwrap();
    let input = values(w.input_pixels() * ch, 3);
    let bytes: Vec<i8> = input.iter().map(|v| (v * 100.0) as i8).collect();
    for kind in [PoolKind::Max, PoolKind::Average] {
        let pool = Pool2d::new(plan.clone(), kind).unwrap();
        let mut out = vec![0f32; plan.output_len()];
        group.bench_function(format!("{kind:?} f32 96x96x16 2x2 s2"), |b| {
            b.iter(|| {
                pool.run_f32(&input, 0..plan.rows(), &mut out, F32Clamp::NONE)
                    .unwrap()
            })
        });
        let mut out = vec![0i8; plan.output_len()];
        group.bench_function(format!("{kind:?} i8 96x96x16 2x2 s2"), |b| {
            b.iter(|| {
                pool.run_int(&bytes, 0..plan.rows(), &mut out, -128, 127)
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, depthwise, pool);
criterion_main!(benches);
