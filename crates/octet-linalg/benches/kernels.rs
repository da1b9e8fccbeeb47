//! Criterion benchmarks of the micro-kernels on convolution shapes of mobile vision models,
//! every instruction set this CPU supports. `cargo bench -p octet-linalg`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // benchmark code

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use octet_linalg::frame::gemm::{ASource, RowOffsets};
use octet_linalg::frame::gemm_f32::{F32Clamp, F32GemmUkernel, PackedF32Gemm};
use octet_linalg::frame::window::Indirection;

use common::values;

/// Pointwise and 3x3 convolutions of a 48x48 feature map, 64 channels in and out.
fn f32_gemm(c: &mut Criterion) {
    let (h, w, cin, cout) = (48usize, 48usize, 64usize, 64usize);
    let input = values(h * w * cin, 1);
    let mut group = c.benchmark_group("f32 conv 48x48x64->64");
    for (name, taps) in [("1x1", 1usize), ("3x3", 9)] {
        let size = if taps == 1 { 1 } else { 3 };
        let window = common::window(h, w, size, 1, true);
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
