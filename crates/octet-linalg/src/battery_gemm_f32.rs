//! The float GEMM's fused epilogues (PRELU, ADD, ADD then PRELU): every micro-kernel against
//! the scalar definition, bit for bit, on shapes off the tile grid (partial blocks of columns,
//! rows in every remainder), split by rows and by columns as the threads split them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use crate::battery::Rng;
use crate::frame::gemm::{ASource, RowOffsets};
use crate::frame::gemm_f32::{F32Clamp, F32Epilogue, F32GemmUkernel, PackedF32Gemm};

#[test]
fn f32_gemm_epilogues_match_their_definition_bit_for_bit() {
    let kernels = F32GemmUkernel::all();
    let mut rng = Rng::new(0xe9);
    for case in 0..200 {
        let (m, n, k) = (rng.usize(1..=40), rng.usize(1..=150), rng.usize(1..=24));
        let input = rng.f32s(m * k);
        let weights = rng.f32s(n * k);
        let bias = rng.f32s(n);
        let other = rng.f32s(m * n);
        // Slopes padded to whole blocks of the widest kernel (64 columns).
        let mut alpha = rng.f32s(n);
        alpha.resize(n + 64, 0.0);
        let clamp = F32Clamp {
            min: -0.25,
            max: f32::MAX,
        };
        let add_clamp = match case % 3 {
            0 => F32Clamp::NONE,
            1 => F32Clamp { min: 0.0, max: 6.0 },
            _ => F32Clamp {
                min: -1.0,
                max: 1.0,
            },
        };
        let epilogues = [
            F32Epilogue::Prelu { alpha: &alpha },
            F32Epilogue::Add {
                other: &other,
                clamp: add_clamp,
            },
            F32Epilogue::AddPrelu {
                other: &other,
                clamp: add_clamp,
                alpha: &alpha,
            },
        ];
        for kernel in &kernels {
            let gemm =
                PackedF32Gemm::with_ukernel(*kernel, &weights, Some(&bias), [n, 1, k], clamp)
                    .unwrap();
            let a = ASource {
                data: &input,
                zero: gemm.zero(),
                rows: RowOffsets::Dense { stride: k },
            };
            let mut plain = vec![f32::NAN; m * n];
            gemm.run(&a, 0..m, &mut plain, n).unwrap();
            for epilogue in epilogues {
                let expected: Vec<f32> = plain
                    .iter()
                    .enumerate()
                    .map(|(i, &y)| epilogue.apply(y, i / n, i % n, n))
                    .collect();
                // Split by rows, and the first row also by blocks of columns.
                let mut out = vec![f32::NAN; m * n];
                let split = m / 2;
                let (top, bottom) = out.split_at_mut(split * n);
                gemm.run_fused(&a, 0..split, 0..n, top, n, epilogue)
                    .unwrap();
                let rest = epilogue.offset(0, split * n).unwrap();
                gemm.run_fused(&a, split..m, 0..n, bottom, n, rest).unwrap();
                let name = kernel.info().name;
                for (i, (x, e)) in out.iter().zip(&expected).enumerate() {
                    assert!(
                        x.to_bits() == e.to_bits(),
                        "{name}, case {case}, {epilogue:?}: element {i} is {x}, expected {e}"
                    );
                }
                let nr = gemm.column_block();
                if n > nr {
                    let mut row = vec![f32::NAN; n];
                    let (left, right) = row.split_at_mut(nr);
                    gemm.run_fused(&a, 0..1, 0..nr, left, n, epilogue).unwrap();
                    let shifted = epilogue.offset(0, nr).unwrap();
                    gemm.run_fused(&a, 0..1, nr..n, right, n, shifted).unwrap();
                    assert!(
                        row.iter()
                            .zip(&expected[..n])
                            .all(|(x, e)| x.to_bits() == e.to_bits()),
                        "{name}, case {case}: split columns"
                    );
                }
            }
        }
    }
}
