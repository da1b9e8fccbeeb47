//! Criterion benchmarks of the element-wise kernels on a 96x96x16 feature map (the size of
//! face_landmark's first stage), every instruction set this CPU supports.
//! `cargo bench -p octet-linalg --bench elementwise`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // benchmark code

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use octet_core::fixed_point::{quantize_multiplier, quantize_multiplier_smaller_than_one_exp};
use octet_linalg::Isa;
use octet_linalg::frame::elementwise::{
    Dequantize, F32Binary, F32BinaryOp, F32Unary, F32UnaryOp, Lut8, QuantBinary, QuantBinaryOp,
    QuantBinaryParams, QuantPrelu, QuantPreluParams, Quantize,
};
use octet_linalg::frame::gemm_f32::F32Clamp;

use common::bytes;

const CHANNELS: usize = 16;
const LEN: usize = 96 * 96 * CHANNELS;

fn floats(len: usize, seed: u32) -> Vec<f32> {
    bytes(len, seed)
        .into_iter()
        .map(|b| f32::from(b) / 16.0)
        .collect()
}

fn isas() -> Vec<Isa> {
    Isa::supported()
        .into_iter()
        .filter(|&i| i != Isa::Avx512Vnni)
        .collect()
}

fn int8(c: &mut Criterion) {
    let x = bytes(LEN, 1);
    let y = bytes(LEN, 2);
    let alpha: Vec<i32> = bytes(CHANNELS, 3).into_iter().map(i32::from).collect();
    let mut out = vec![0i8; LEN];
    let mut group = c.benchmark_group("int8 96x96x16");
    group.throughput(Throughput::Elements(LEN as u64));
    let q = |r: f64| quantize_multiplier_smaller_than_one_exp(r).unwrap();
    let add = QuantBinaryParams {
        op: QuantBinaryOp::Add,
        left_shift: 20,
        x_offset: 3,
        x_multiplier: q(0.5),
        y_offset: -7,
        y_multiplier: q(0.37),
        output_offset: -5,
        output_multiplier: q(0.02 / f64::from(1 << 20) / 0.015),
        act_min: -128,
        act_max: 127,
    };
    let prelu = QuantPreluParams {
        input_offset: 4,
        alpha,
        output_offset: -3,
        identity_multiplier: quantize_multiplier(0.8).unwrap(),
        alpha_multiplier: quantize_multiplier(0.003).unwrap(),
        min: -128,
        max: 127,
    };
    let mut table = [0u8; 256];
    for (i, t) in table.iter_mut().enumerate() {
        *t = (i * 7 + 3) as u8;
    }
    for isa in isas() {
        let k = QuantBinary::<i8>::new(isa, add).unwrap();
        group.bench_function(format!("add {isa}"), |b| {
            b.iter(|| k.run(&x, &y, &mut out).unwrap())
        });
        let k = QuantBinary::<i8>::new(isa, add).unwrap();
        group.bench_function(format!("add per-channel {isa}"), |b| {
            b.iter(|| k.run(&x, &y[..CHANNELS], &mut out).unwrap())
        });
        let k = QuantPrelu::<i8>::new(isa, prelu.clone()).unwrap();
        group.bench_function(format!("prelu {isa}"), |b| {
            b.iter(|| k.run(&x, &mut out).unwrap())
        });
        let lut = Lut8::new(isa, table);
        let xb: &[u8] = bytemuck_bytes(&x);
        let mut ob = vec![0u8; LEN];
        group.bench_function(format!("lut {} ({isa})", lut.isa()), |b| {
            b.iter(|| lut.run(xb, &mut ob).unwrap())
        });
    }
    group.finish();
}

fn bytemuck_bytes(x: &[i8]) -> &[u8] {
    // i8 and u8 have the same layout; reinterpret through a copy-free safe path.
    let (_, bytes, _) = {
        // A safe reinterpretation is not available without bytemuck; copy once instead.
        (
            (),
            Box::leak(
                x.iter()
                    .map(|&v| v as u8)
                    .collect::<Vec<u8>>()
                    .into_boxed_slice(),
            ),
            (),
        )
    };
    bytes
}

fn float(c: &mut Criterion) {
    let x = floats(LEN, 1);
    let y = floats(LEN, 2);
    let q = bytes(LEN, 3);
    let mut out = vec![0f32; LEN];
    let mut qout = vec![0i8; LEN];
    let mut group = c.benchmark_group("f32 96x96x16");
    group.throughput(Throughput::Elements(LEN as u64));
    for isa in isas() {
        let k = F32Binary::new(isa, F32BinaryOp::Add, F32Clamp::NONE);
        group.bench_function(format!("add {isa}"), |b| {
            b.iter(|| k.run(&x, &y, &mut out).unwrap())
        });
        let k = F32Binary::new(isa, F32BinaryOp::Prelu, F32Clamp::NONE);
        group.bench_function(format!("prelu {isa}"), |b| {
            b.iter(|| k.run(&x, &y[..CHANNELS], &mut out).unwrap())
        });
        let k = F32Unary::new(isa, F32UnaryOp::HardSwish);
        group.bench_function(format!("hard_swish {isa}"), |b| {
            b.iter(|| k.run(&x, &mut out).unwrap())
        });
        let k = Quantize::<i8>::new(isa, 0.05, -3);
        group.bench_function(format!("quantize {isa}"), |b| {
            b.iter(|| k.run(&x, &mut qout).unwrap())
        });
        let k = Dequantize::<i8>::new(isa, 0.05, -3);
        group.bench_function(format!("dequantize {isa}"), |b| {
            b.iter(|| k.run(&q, &mut out).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, int8, float);
criterion_main!(benches);
