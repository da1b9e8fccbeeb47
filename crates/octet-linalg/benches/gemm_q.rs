//! Criterion benchmarks of the quantized GEMM micro-kernels on convolution shapes of mobile
//! vision models and on a matrix-vector product, every kernel this CPU supports.
//! `cargo bench -p octet-linalg --bench gemm_q`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // benchmark code

mod common;

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use octet_core::fixed_point::QuantizedMultiplier;
use octet_linalg::frame::gemm::RowOffsets;
use octet_linalg::frame::gemm_q::{
    PackedQGemm, QGemmSpec, QGemmUkernel, QIn, QType, QWeights, Requant,
};
use octet_linalg::frame::window::Indirection;

use common::bytes;

/// `name`: an `h` x `w` map, `cin` -> `cout` channels, a `size` x `size` filter (stride 1,
/// SAME); the input conversion is included in the time.
fn conv(c: &mut Criterion, h: usize, w: usize, cin: usize, cout: usize, size: usize) {
    let taps = size * size;
    let input = bytes(h * w * cin, 1);
    let weights = bytes(cout * taps * cin, 2);
    let bias: Vec<i32> = (0..cout as i32).map(|i| i * 7 - 100).collect();
    let multipliers: Vec<QuantizedMultiplier> = (0..cout as i32)
        .map(|i| QuantizedMultiplier::new((1 << 30) + i * 12345, -9))
        .collect();
    let window = common::window(h, w, size, 1, true);
    let spec = QGemmSpec {
        input: QType::I8,
        input_offset: 3,
        weights: QWeights::I8(&weights),
        weight_offset: 0,
        shape: [cout, taps, cin],
        bias: Some(&bias),
        requant: Requant::Fixed(&multipliers),
        output: QType::I8,
        output_zero_point: -5,
        clamp: (-128, 127),
    };
    let mut group = c.benchmark_group(format!("i8 conv {h}x{w}x{cin}->{cout} {size}x{size}"));
    group.throughput(Throughput::Elements((h * w * cout * taps * cin) as u64));
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_millis(500));
    for kernel in QGemmUkernel::all() {
        let Ok(gemm) = PackedQGemm::with_ukernel(kernel, &spec) else {
            continue;
        };
        let format = gemm.input_format();
        let mut scratch = vec![0u8; format.scratch_bytes(h * w, cin).unwrap()];
        let stride = format.pixel_stride(cin);
        let indirection = Indirection::new(&window, stride).unwrap();
        let mut out = vec![0i8; h * w * cout];
        group.bench_function(kernel.info().name, |b| {
            b.iter(|| {
                let converted = format.convert(QIn::I8(&input), cin, &mut scratch).unwrap();
                let rows = if taps == 1 {
                    RowOffsets::Dense { stride }
                } else {
                    RowOffsets::Indirect(&indirection)
                };
                let a = converted.source(0, rows).unwrap();
                gemm.run(&a, 0..h * w, &mut out, cout).unwrap();
            })
        });
    }
    group.finish();
}

/// A fully connected layer with one row: `depth` -> `units`, double requantization.
fn gemv(c: &mut Criterion, depth: usize, units: usize) {
    let input = bytes(depth, 3);
    let weights = bytes(units * depth, 4);
    let scale = [0.0007];
    let spec = QGemmSpec {
        input: QType::I8,
        input_offset: 3,
        weights: QWeights::I8(&weights),
        weight_offset: 0,
        shape: [units, 1, depth],
        bias: None,
        requant: Requant::Double(&scale),
        output: QType::I8,
        output_zero_point: -5,
        clamp: (-128, 127),
    };
    let mut group = c.benchmark_group(format!("i8 fc 1x{depth}->{units}"));
    group.throughput(Throughput::Elements((depth * units) as u64));
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_millis(500));
    for kernel in QGemmUkernel::all() {
        let Ok(gemm) = PackedQGemm::with_ukernel(kernel, &spec) else {
            continue;
        };
        let format = gemm.input_format();
        let mut scratch = vec![0u8; format.scratch_bytes(1, depth).unwrap()];
        let mut out = vec![0i8; units];
        group.bench_function(kernel.info().name, |b| {
            b.iter(|| {
                let converted = format
                    .convert(QIn::I8(&input), depth, &mut scratch)
                    .unwrap();
                let rows = RowOffsets::Dense {
                    stride: converted.pixel_stride(),
                };
                let a = converted.source(0, rows).unwrap();
                gemm.run(&a, 0..1, &mut out, units).unwrap();
            })
        });
    }
    group.finish();
}

fn q_gemm(c: &mut Criterion) {
    conv(c, 48, 48, 64, 64, 1);
    conv(c, 48, 48, 64, 64, 3);
    conv(c, 96, 96, 16, 16, 1);
    conv(c, 24, 24, 128, 128, 3);
    gemv(c, 1152, 1000);
}

criterion_group!(benches, q_gemm);
criterion_main!(benches);
