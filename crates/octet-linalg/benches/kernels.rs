//! Criterion benchmarks of the micro-kernels on convolution shapes of mobile vision models,
//! every instruction set this CPU supports. `cargo bench -p octet-linalg`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // benchmark code

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use octet_linalg::frame::gemm::{ASource, RowOffsets};
use octet_linalg::frame::gemm_f32::{F32Clamp, F32GemmUkernel, PackedF32Gemm};
use octet_linalg::frame::window::{Indirection, Window2d};

fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// Pointwise and 3x3 convolutions of a 48x48 feature map, 64 channels in and out.
fn f32_gemm(c: &mut Criterion) {
    let (h, w, cin, cout) = (48usize, 48usize, 64usize, 64usize);
    let input = values(h * w * cin, 1);
    let mut group = c.benchmark_group("f32 conv 48x48x64->64");
    for (name, taps) in [("1x1", 1usize), ("3x3", 9)] {
        let size = if taps == 1 { 1 } else { 3 };
        let window = Window2d {
            batches: 1,
            in_h: h,
            in_w: w,
            out_h: h,
            out_w: w,
            filter_h: size,
            filter_w: size,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: size / 2,
            pad_left: size / 2,
        };
        let indirection = Indirection::new(&window, cin).unwrap();
        let weights = values(cout * taps * cin, 2);
        group.throughput(Throughput::Elements((h * w * cout * taps * cin) as u64));
        for kernel in F32GemmUkernel::all() {
            let gemm = PackedF32Gemm::with_ukernel(
                kernel,
                &weights,
                None,
                [cout, taps, cin],
                F32Clamp::NONE,
            )
            .unwrap();
            let rows = if taps == 1 {
                RowOffsets::Dense { stride: cin }
            } else {
                RowOffsets::Indirect(&indirection)
            };
            let mut out = vec![0f32; h * w * cout];
            group.bench_function(format!("{name} {}", kernel.info().name), |b| {
                b.iter(|| {
                    let a = ASource {
                        data: &input,
                        zero: gemm.zero(),
                        rows,
                    };
                    gemm.run(&a, 0..h * w, &mut out, cout).unwrap();
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, f32_gemm);
criterion_main!(benches);
