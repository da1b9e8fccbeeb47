//! The float and int8 GEMMs on convolution shapes of the MediaPipe models, including those that
//! are hard for a GEMM: few input channels (the first layer), few output channels, few rows,
//! one row. `cargo bench -p octet-linalg --bench gemm_shapes`; with `OCTET_BENCH_ALL=1` the
//! float layers run on every kernel, not only the one the GEMM picks, and with
//! `OCTET_BENCH_COLD=1` they start every run with cold caches (16 MiB written in between, not
//! timed), as a layer of a model does whose weights the previous layers evicted.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // benchmark code

mod common;

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use octet_core::fixed_point::QuantizedMultiplier;
use octet_linalg::Isa;
use octet_linalg::frame::gemm::{ASource, PaddedImage, RowOffsets};
use octet_linalg::frame::gemm_f32::{F32Clamp, F32GemmUkernel, PackedF32Gemm};
use octet_linalg::frame::gemm_q::{PackedQGemm, QGemmSpec, QIn, QType, QWeights, Requant};
use octet_linalg::frame::window::{Indirection, Window2d};

use common::values;

/// A convolution layer: input `h` x `w` x `cin`, `cout` filters of `size` x `size`, `stride`,
/// SAME padding (or VALID over the whole input when `valid`).
#[derive(Clone, Copy)]
struct Layer {
    name: &'static str,
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    size: usize,
    stride: usize,
    valid: bool,
}

impl Layer {
    fn window(&self) -> Window2d {
        common::window(self.h, self.w, self.size, self.stride, !self.valid)
    }

    fn macs(&self) -> u64 {
        let w = self.window();
        (w.output_pixels() * self.cout * w.taps() * self.cin) as u64
    }
}

const LAYERS: [Layer; 12] = [
    Layer {
        name: "112x112x16->64 1x1",
        h: 112,
        w: 112,
        cin: 16,
        cout: 64,
        size: 1,
        stride: 1,
        valid: false,
    },
    Layer {
        name: "56x56x24->144 1x1",
        h: 56,
        w: 56,
        cin: 24,
        cout: 144,
        size: 1,
        stride: 1,
        valid: false,
    },
    Layer {
        name: "112x112x24->16 1x1",
        h: 112,
        w: 112,
        cin: 24,
        cout: 16,
        size: 1,
        stride: 1,
        valid: false,
    },
    Layer {
        name: "192x192x3->16 3x3 s2",
        h: 192,
        w: 192,
        cin: 3,
        cout: 16,
        size: 3,
        stride: 2,
        valid: false,
    },
    Layer {
        name: "96x96x16->16 1x1",
        h: 96,
        w: 96,
        cin: 16,
        cout: 16,
        size: 1,
        stride: 1,
        valid: false,
    },
    Layer {
        name: "24x24x64->64 3x3",
        h: 24,
        w: 24,
        cin: 64,
        cout: 64,
        size: 3,
        stride: 1,
        valid: false,
    },
    Layer {
        name: "3x3x128->128 1x1",
        h: 3,
        w: 3,
        cin: 128,
        cout: 128,
        size: 1,
        stride: 1,
        valid: false,
    },
    Layer {
        name: "3x3x32->1404 3x3 valid",
        h: 3,
        w: 3,
        cin: 32,
        cout: 1404,
        size: 3,
        stride: 1,
        valid: true,
    },
    Layer {
        name: "14x14x672->112 1x1",
        h: 14,
        w: 14,
        cin: 672,
        cout: 112,
        size: 1,
        stride: 1,
        valid: false,
    },
    Layer {
        name: "7x7x1152->192 1x1",
        h: 7,
        w: 7,
        cin: 1152,
        cout: 192,
        size: 1,
        stride: 1,
        valid: false,
    },
    Layer {
        name: "56x56x144->24 1x1",
        h: 56,
        w: 56,
        cin: 144,
        cout: 24,
        size: 1,
        stride: 1,
        valid: false,
    },
    Layer {
        name: "1x1x1152->1 1x1",
        h: 1,
        w: 1,
        cin: 1152,
        cout: 1,
        size: 1,
        stride: 1,
        valid: false,
    },
];

fn float(c: &mut Criterion) {
    let mut group = c.benchmark_group("f32 layer");
    group.measurement_time(Duration::from_secs(1));
    group.warm_up_time(Duration::from_millis(300));
    for layer in LAYERS {
        let window = layer.window();
        let taps = window.taps();
        let input = values(window.input_pixels() * layer.cin, 1);
        let weights = values(layer.cout * taps * layer.cin, 2);
        let bias = values(layer.cout, 3);
        let shape = [layer.cout, taps, layer.cin];
        let m = window.output_pixels();
        let selected =
            PackedF32Gemm::for_rows(Isa::detect(), m, &weights, None, shape, F32Clamp::NONE)
                .unwrap()
                .ukernel();
        for kernel in F32GemmUkernel::all() {
            // OCTET_BENCH_ALL=1: every kernel, not only the one the GEMM would pick.
            if std::env::var_os("OCTET_BENCH_ALL").is_none() && kernel.info() != selected {
                continue;
            }
            let gemm = PackedF32Gemm::with_ukernel(
                kernel,
                &weights,
                Some(&bias),
                [layer.cout, taps, layer.cin],
                F32Clamp::NONE,
            )
            .unwrap();
            let indirection = Indirection::new(&window, layer.cin).unwrap();
            let m = window.output_pixels();
            let mut out = vec![0f32; m * layer.cout];
            group.throughput(Throughput::Elements(layer.macs()));
            let mut flush = vec![0u8; 16 << 20];
            let cold = std::env::var_os("OCTET_BENCH_COLD").is_some();
            group.bench_function(format!("{} {}", layer.name, gemm.ukernel().name), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        if cold {
                            for (i, v) in flush.iter_mut().enumerate().step_by(64) {
                                *v = v.wrapping_add(i as u8);
                            }
                        }
                        let start = std::time::Instant::now();
                        let rows = if window.is_pointwise() {
                            RowOffsets::Dense { stride: layer.cin }
                        } else {
                            RowOffsets::Indirect(&indirection)
                        };
                        let a = ASource {
                            data: &input,
                            zero: gemm.zero(),
                            rows,
                        };
                        gemm.run(&a, 0..m, &mut out, layer.cout).unwrap();
                        total += start.elapsed();
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

fn int8(c: &mut Criterion) {
    let mut group = c.benchmark_group("i8 layer");
    group.measurement_time(Duration::from_secs(1));
    group.warm_up_time(Duration::from_millis(300));
    for layer in LAYERS {
        let window = layer.window();
        let taps = window.taps();
        let input: Vec<i8> = values(window.input_pixels() * layer.cin, 1)
            .iter()
            .map(|&v| (v * 127.0) as i8)
            .collect();
        let weights: Vec<i8> = values(layer.cout * taps * layer.cin, 2)
            .iter()
            .map(|&v| (v * 127.0) as i8)
            .collect();
        let bias: Vec<i32> = (0..layer.cout as i32).collect();
        let multipliers = vec![QuantizedMultiplier::new(1 << 30, -8); layer.cout];
        let spec = QGemmSpec {
            input: QType::I8,
            input_offset: 5,
            weights: QWeights::I8(&weights),
            weight_offset: 0,
            shape: [layer.cout, taps, layer.cin],
            bias: Some(&bias),
            requant: Requant::Fixed(&multipliers),
            output: QType::I8,
            output_zero_point: -3,
            clamp: (-128, 127),
        };
        let m = window.output_pixels();
        let gemm = PackedQGemm::new(Isa::detect(), &spec, m).unwrap();
        let format = gemm.input_format();
        let pixels = window.input_pixels();
        let mut scratch = vec![0u8; format.scratch_bytes(pixels, layer.cin).unwrap()];
        let indirection = Indirection::new(&window, format.pixel_stride(layer.cin)).unwrap();
        let mut out = vec![0i8; m * layer.cout];
        group.throughput(Throughput::Elements(layer.macs()));
        group.bench_function(format!("{} {}", layer.name, gemm.ukernel().name), |b| {
            b.iter(|| {
                let converted = format
                    .convert(QIn::I8(&input), layer.cin, &mut scratch)
                    .unwrap();
                let rows = if window.is_pointwise() {
                    RowOffsets::Dense {
                        stride: converted.pixel_stride(),
                    }
                } else {
                    RowOffsets::Indirect(&indirection)
                };
                let a = converted.source(0, rows).unwrap();
                gemm.run(&a, 0..m, &mut out, layer.cout).unwrap();
            })
        });
    }
    group.finish();
}

/// The first layer (3 channels) with merged filter rows over a padded copy of the input.
fn merged(c: &mut Criterion) {
    let layer = LAYERS[0];
    let window = layer.window();
    let image = PaddedImage {
        batches: 1,
        height: layer.h,
        width: layer.w,
        top: window.pad_top,
        bottom: 1,
        left: window.pad_left,
        right: 1,
    };
    let taps = Window2d {
        in_h: image.padded_height(),
        in_w: image.padded_width(),
        filter_w: 1,
        pad_top: 0,
        pad_left: 0,
        ..window
    };
    let m = window.output_pixels();
    let mut group = c.benchmark_group("merged layer");
    group.measurement_time(Duration::from_secs(1));
    group.warm_up_time(Duration::from_millis(300));
    group.throughput(Throughput::Elements(layer.macs()));
    // float: the weights' layout is already [n][fy][fx * c].
    let input = values(window.input_pixels() * layer.cin, 1);
    let weights = values(layer.cout * window.taps() * layer.cin, 2);
    let gemm = PackedF32Gemm::new(
        Isa::detect(),
        &weights,
        None,
        [layer.cout, layer.size, layer.size * layer.cin],
        F32Clamp::NONE,
    )
    .unwrap();
    let mut padded = vec![0f32; image.padded_pixels().unwrap() * layer.cin];
    let indirection = Indirection::new(&taps, layer.cin).unwrap();
    let mut out = vec![0f32; m * layer.cout];
    group.bench_function(format!("f32 {} {}", layer.name, gemm.ukernel().name), |b| {
        b.iter(|| {
            image
                .fill(&input, layer.cin, layer.cin, &mut padded, 0.0, |x, y| {
                    y.copy_from_slice(x);
                    Ok(())
                })
                .unwrap();
            let a = ASource {
                data: &padded,
                zero: gemm.zero(),
                rows: RowOffsets::Indirect(&indirection),
            };
            gemm.run(&a, 0..m, &mut out, layer.cout).unwrap();
        })
    });
    // int8: channels padded to 4.
    let input: Vec<i8> = input.iter().map(|&v| (v * 127.0) as i8).collect();
    let mut wide = vec![0i8; layer.cout * window.taps() * 4];
    for (i, &w) in weights.iter().enumerate() {
        wide[i / layer.cin * 4 + i % layer.cin] = (w * 127.0) as i8;
    }
    let multipliers = vec![QuantizedMultiplier::new(1 << 30, -8); layer.cout];
    let spec = QGemmSpec {
        input: QType::I8,
        input_offset: 5,
        weights: QWeights::I8(&wide),
        weight_offset: 0,
        shape: [layer.cout, layer.size, layer.size * 4],
        bias: None,
        requant: Requant::Fixed(&multipliers),
        output: QType::I8,
        output_zero_point: -3,
        clamp: (-128, 127),
    };
    let gemm = PackedQGemm::new(Isa::detect(), &spec, m).unwrap();
    let format = gemm.input_format();
    let mut scratch = vec![0u8; format.padded_scratch_bytes(&image, layer.cin).unwrap()];
    let indirection = Indirection::new(&taps, 4).unwrap();
    let mut out = vec![0i8; m * layer.cout];
    group.bench_function(format!("i8 {} {}", layer.name, gemm.ukernel().name), |b| {
        b.iter(|| {
            let converted = format
                .convert_padded(QIn::I8(&input), layer.cin, &image, &mut scratch)
                .unwrap();
            let a = converted
                .source(0, RowOffsets::Indirect(&indirection))
                .unwrap();
            gemm.run(&a, 0..m, &mut out, layer.cout).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, float, int8, merged);
criterion_main!(benches);
