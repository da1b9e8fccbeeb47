//! `--target` and the graph passes it goes with: which ops stay float for LiteRT, what
//! integer-only refuses, the folding of standalone activations into their producers,
//! `--keep-float` and the calibration methods.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use octet_core::builder::{ModelBuilder, TensorSpec};
use octet_core::{
    ActivationFunction, Conv2DOptions, DType, Model, Op, Padding, TensorData, TensorId,
};
use octet_quant::{
    Calibration, CalibrationMethod, FloatReason, Mode, OpPattern, QuantizeOptions, RangeMethod,
    Target, passes, quantize,
};
use octet_runtime::Interpreter;

const SHAPE: [usize; 4] = [1, 6, 6, 4];

fn conv_options(activation: ActivationFunction) -> Op {
    Op::Conv2D(Conv2DOptions {
        padding: Padding::Same,
        stride_w: 1,
        stride_h: 1,
        activation,
        dilation_w: 1,
        dilation_h: 1,
        ..Default::default()
    })
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// A 3x3 convolution of `x` (4 -> 4 channels) with `activation`.
fn conv(b: &mut ModelBuilder, x: TensorId, seed: u32, activation: ActivationFunction) -> TensorId {
    let w = b
        .constant(
            TensorSpec::new(DType::Float32, &[4, 3, 3, 4]),
            TensorData::F32(values(144, seed)),
        )
        .unwrap();
    let bias = b
        .constant(
            TensorSpec::new(DType::Float32, &[4]),
            TensorData::F32(values(4, seed + 1)),
        )
        .unwrap();
    b.op(
        conv_options(activation),
        &[Some(x), Some(w), Some(bias)],
        TensorSpec::new(DType::Float32, &SHAPE),
    )
    .unwrap()
}

/// conv -> `op` -> conv, with `op`'s extra constant input if it has one.
fn sandwich(op: Op) -> Model {
    let mut b = ModelBuilder::new();
    let x = b.input(TensorSpec::new(DType::Float32, &SHAPE)).unwrap();
    let c = conv(&mut b, x, 1, ActivationFunction::None);
    let mut inputs = vec![Some(c)];
    if op == Op::Prelu {
        let alpha = b
            .constant(
                TensorSpec::new(DType::Float32, &[1, 1, 4]),
                TensorData::F32(vec![0.1, -0.5, 1.3, 0.25]),
            )
            .unwrap();
        inputs.push(Some(alpha));
    }
    let a = b
        .op(op, &inputs, TensorSpec::new(DType::Float32, &SHAPE))
        .unwrap();
    let y = conv(&mut b, a, 3, ActivationFunction::None);
    b.output(y);
    b.finish().unwrap()
}

fn calibration() -> Calibration {
    Calibration {
        samples: (0..4)
            .map(|s| vec![values(SHAPE.iter().product(), 100 + s)])
            .collect(),
    }
}

fn ops_of(model: &Model) -> Vec<String> {
    model
        .main_subgraph()
        .unwrap()
        .operators
        .iter()
        .map(|o| o.op.name().into_owned())
        .collect()
}

fn options(target: Target) -> QuantizeOptions {
    let mut options = QuantizeOptions::new(Mode::Int8);
    options.target = target;
    options
}

/// The float model's outputs on one input, as raw bytes.
fn run(model: &Model, input: &[f32]) -> Vec<u8> {
    let mut interpreter = Interpreter::new(model).unwrap();
    interpreter.set_input(0, &le_bytes(input)).unwrap();
    interpreter.invoke().unwrap();
    interpreter.output(0).unwrap().to_vec()
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn litert_keeps_prelu_float_between_dequantize_and_quantize() {
    let model = sandwich(Op::Prelu);
    let (q, report) = quantize(&model, &options(Target::Litert), Some(&calibration())).unwrap();
    assert_eq!(
        ops_of(&q),
        [
            "QUANTIZE",
            "CONV_2D",
            "DEQUANTIZE",
            "PRELU",
            "QUANTIZE",
            "CONV_2D",
            "DEQUANTIZE"
        ]
    );
    assert_eq!(report.float_ops.len(), 1);
    assert_eq!(report.float_ops[0].op, "PRELU");
    assert_eq!(report.float_ops[0].reason, FloatReason::LiteRtDelegate);
    // The quantized model still computes PRELU: close to the float model.
    let input = values(SHAPE.iter().product(), 7);
    let (f, qo) = (run(&model, &input), run(&q, &input));
    let max = f
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()).abs())
        .fold(0.0f32, f32::max);
    for (a, b) in f.chunks_exact(4).zip(qo.chunks_exact(4)) {
        let (a, b) = (
            f32::from_le_bytes(a.try_into().unwrap()),
            f32::from_le_bytes(b.try_into().unwrap()),
        );
        assert!((a - b).abs() < 0.05 * max, "{a} vs {b}");
    }
}

/// A pointwise convolution over 48x48x4 (16 weights, 9216 outputs: activation-heavy), a PAD
/// between the input and it, a MAX_POOL_2D down to 6x6, then a 3x3 convolution (144 weights,
/// 144 outputs).
fn high_resolution_stem() -> Model {
    let mut b = ModelBuilder::new();
    let big = [1, 48, 48, 4];
    let x = b
        .input(TensorSpec::new(DType::Float32, &[1, 46, 46, 4]))
        .unwrap();
    let pads = b
        .constant(
            TensorSpec::new(DType::Int32, &[4, 2]),
            TensorData::I32(vec![0, 0, 1, 1, 1, 1, 0, 0]),
        )
        .unwrap();
    let padded = b
        .op(
            Op::Pad,
            &[Some(x), Some(pads)],
            TensorSpec::new(DType::Float32, &big),
        )
        .unwrap();
    let w = b
        .constant(
            TensorSpec::new(DType::Float32, &[4, 1, 1, 4]),
            TensorData::F32(values(16, 5)),
        )
        .unwrap();
    let stem = b
        .op(
            conv_options(ActivationFunction::Relu),
            &[Some(padded), Some(w), None],
            TensorSpec::new(DType::Float32, &big),
        )
        .unwrap();
    let pooled = b
        .op(
            Op::MaxPool2D(octet_core::Pool2DOptions {
                padding: Padding::Valid,
                stride_w: 8,
                stride_h: 8,
                filter_width: 8,
                filter_height: 8,
                activation: ActivationFunction::None,
            }),
            &[Some(stem)],
            TensorSpec::new(DType::Float32, &SHAPE),
        )
        .unwrap();
    let y = conv(&mut b, pooled, 9, ActivationFunction::None);
    b.output(y);
    b.finish().unwrap()
}

#[test]
fn litert_keeps_activation_heavy_layers_float_and_the_others_do_not() {
    let model = high_resolution_stem();
    let calibration = Calibration {
        samples: (0..4).map(|s| vec![values(46 * 46 * 4, 200 + s)]).collect(),
    };
    let (q, report) = quantize(&model, &options(Target::Litert), Some(&calibration)).unwrap();
    assert_eq!(
        ops_of(&q),
        [
            "PAD",
            "CONV_2D",
            "MAX_POOL_2D",
            "QUANTIZE",
            "CONV_2D",
            "DEQUANTIZE"
        ]
    );
    let kept: Vec<(&str, FloatReason)> = report
        .float_ops
        .iter()
        .map(|f| (f.op.as_str(), f.reason))
        .collect();
    let heavy = FloatReason::LiteRtActivationHeavy;
    assert_eq!(
        kept,
        [("PAD", heavy), ("CONV_2D", heavy), ("MAX_POOL_2D", heavy)]
    );
    for target in [Target::Octet, Target::IntegerOnly] {
        let (q, report) = quantize(&model, &options(target), Some(&calibration)).unwrap();
        assert!(report.float_ops.is_empty(), "{target:?}");
        assert_eq!(
            ops_of(&q),
            [
                "QUANTIZE",
                "PAD",
                "CONV_2D",
                "MAX_POOL_2D",
                "CONV_2D",
                "DEQUANTIZE"
            ]
        );
    }
}

#[test]
fn octet_and_integer_only_quantize_prelu() {
    for target in [Target::Octet, Target::IntegerOnly] {
        let (q, report) =
            quantize(&sandwich(Op::Prelu), &options(target), Some(&calibration())).unwrap();
        assert_eq!(
            ops_of(&q),
            ["QUANTIZE", "CONV_2D", "PRELU", "CONV_2D", "DEQUANTIZE"],
            "{target:?}"
        );
        assert!(report.float_ops.is_empty());
    }
}

#[test]
fn integer_only_names_the_op_without_an_integer_kernel() {
    let error = quantize(
        &sandwich(Op::Elu),
        &options(Target::IntegerOnly),
        Some(&calibration()),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("integer-only"), "{error}");
    assert!(error.contains("ELU (operator 1)"), "{error}");
    // The other targets keep it float and say why.
    let (_, report) = quantize(
        &sandwich(Op::Elu),
        &options(Target::Litert),
        Some(&calibration()),
    )
    .unwrap();
    assert_eq!(report.float_ops.len(), 1);
    assert_eq!(report.float_ops[0].reason, FloatReason::NoIntegerKernel);
}

#[test]
fn standalone_relus_fold_into_their_producer_without_changing_float_results() {
    for (op, activation) in [
        (Op::Relu, ActivationFunction::Relu),
        (Op::Relu6, ActivationFunction::Relu6),
        (Op::ReluN1To1, ActivationFunction::ReluN1To1),
    ] {
        let model = sandwich(op.clone());
        let mut fused = model.clone();
        assert_eq!(passes::fuse_activations(&mut fused).unwrap(), 1);
        assert_eq!(ops_of(&fused), ["CONV_2D", "CONV_2D"]);
        let first = &fused.main_subgraph().unwrap().operators[0];
        assert_eq!(first.op, conv_options(activation));
        fused.validate().unwrap();
        let input = values(SHAPE.iter().product(), 9);
        assert_eq!(run(&model, &input), run(&fused, &input), "{op:?}");
        // Quantizing reports the fold, and no RELU is left to fall off XNNPACK.
        let (q, report) = quantize(&model, &options(Target::Litert), Some(&calibration())).unwrap();
        assert_eq!(report.activations_fused, 1);
        assert!(report.float_ops.is_empty());
        assert_eq!(ops_of(&q), ["QUANTIZE", "CONV_2D", "CONV_2D", "DEQUANTIZE"]);
    }
}

#[test]
fn a_relu_whose_input_is_used_elsewhere_or_an_output_is_not_folded() {
    // A convolution with `activation`, a RELU of it, and `finish` choosing the graph's outputs
    // (or adding readers); then the RELUs folded.
    let folded = |activation, finish: &dyn Fn(&mut ModelBuilder, TensorId, TensorId)| {
        let mut b = ModelBuilder::new();
        let x = b.input(TensorSpec::new(DType::Float32, &SHAPE)).unwrap();
        let c = conv(&mut b, x, 1, activation);
        let r = b
            .op(
                Op::Relu,
                &[Some(c)],
                TensorSpec::new(DType::Float32, &SHAPE),
            )
            .unwrap();
        finish(&mut b, c, r);
        let mut model = b.finish().unwrap();
        passes::fuse_activations(&mut model).unwrap()
    };
    // The convolution's output also feeds an ADD: folding would clamp the ADD's input.
    let also_added = |b: &mut ModelBuilder, c, r| {
        let s = b
            .op(
                Op::Add(Default::default()),
                &[Some(r), Some(c)],
                TensorSpec::new(DType::Float32, &SHAPE),
            )
            .unwrap();
        b.output(s);
    };
    assert_eq!(folded(ActivationFunction::None, &also_added), 0);
    // The convolution's output is a graph output.
    let both_outputs = |b: &mut ModelBuilder, c, r| {
        b.output(c);
        b.output(r);
    };
    assert_eq!(folded(ActivationFunction::None, &both_outputs), 0);
    // The producer already has an activation.
    let relu_output = |b: &mut ModelBuilder, _, r| b.output(r);
    assert_eq!(folded(ActivationFunction::Relu6, &relu_output), 0);
}

#[test]
fn an_integer_output_after_a_float_op_is_quantized() {
    // ... -> CONV_2D -> PRELU (float for LiteRT) as the graph output, int8 outputs asked for.
    let mut b = ModelBuilder::new();
    let x = b.input(TensorSpec::new(DType::Float32, &SHAPE)).unwrap();
    let c = conv(&mut b, x, 1, ActivationFunction::None);
    let alpha = b
        .constant(
            TensorSpec::new(DType::Float32, &[1, 1, 4]),
            TensorData::F32(vec![0.1, 0.2, 0.3, 0.4]),
        )
        .unwrap();
    let y = b
        .op(
            Op::Prelu,
            &[Some(c), Some(alpha)],
            TensorSpec::new(DType::Float32, &SHAPE),
        )
        .unwrap();
    b.output(y);
    let model = b.finish().unwrap();
    let mut options = options(Target::Litert);
    options.input_type = DType::Int8;
    options.output_type = DType::Int8;
    let (q, _) = quantize(&model, &options, Some(&calibration())).unwrap();
    let sg = q.main_subgraph().unwrap();
    let out = &sg.tensors[sg.outputs[0].index()];
    assert_eq!(out.dtype, DType::Int8);
    assert_eq!(ops_of(&q).last().map(String::as_str), Some("QUANTIZE"));
}

#[test]
fn keep_float_keeps_the_ops_it_names_and_says_so() {
    let model = sandwich(Op::Relu6);
    // The second convolution's output is the graph output, named like every builder tensor.
    let out = {
        let sg = model.main_subgraph().unwrap();
        sg.tensors[sg.outputs[0].index()].name.clone()
    };
    let mut options = options(Target::Litert);
    options.keep_float = Some(OpPattern::new(&format!("^{out}$")).unwrap());
    let (q, report) = quantize(&model, &options, Some(&calibration())).unwrap();
    assert_eq!(
        ops_of(&q),
        ["QUANTIZE", "CONV_2D", "DEQUANTIZE", "CONV_2D"],
        "{:?}",
        report.float_ops
    );
    assert_eq!(report.float_ops.len(), 1);
    assert_eq!(report.float_ops[0].reason, FloatReason::Requested);
    // By op name.
    options.keep_float = Some(OpPattern::new("CONV_2D").unwrap());
    let (_, report) = quantize(&model, &options, Some(&calibration())).unwrap();
    assert_eq!(report.float_ops.len(), 2);
    assert!(OpPattern::new("(").is_err());
}

#[test]
fn every_calibration_method_gives_a_valid_model_and_auto_names_its_choice() {
    let model = sandwich(Op::Prelu);
    for method in [
        CalibrationMethod::Fixed(RangeMethod::MinMax),
        CalibrationMethod::Fixed(RangeMethod::Percentile(99.0)),
        CalibrationMethod::Fixed(RangeMethod::Mse),
        CalibrationMethod::Auto,
    ] {
        let mut options = options(Target::Octet);
        options.calibration = method;
        let (q, report) = quantize(&model, &options, Some(&calibration())).unwrap();
        q.validate().unwrap();
        let used = report.calibration.unwrap();
        match method {
            CalibrationMethod::Fixed(m) => assert_eq!(used, m),
            CalibrationMethod::Auto => assert!(matches!(
                used,
                RangeMethod::MinMax | RangeMethod::Percentile(_) | RangeMethod::Mse
            )),
        }
    }
    // Clipping narrows a range the extremes would set: the first convolution's output.
    let range_of = |method| {
        let mut options = options(Target::Octet);
        options.calibration = CalibrationMethod::Fixed(method);
        let (q, _) = quantize(&model, &options, Some(&calibration())).unwrap();
        let sg = q.main_subgraph().unwrap();
        let conv = &sg.operators[1];
        sg.tensors[conv.outputs[0].index()]
            .single_quant()
            .unwrap()
            .0
    };
    assert!(range_of(RangeMethod::Percentile(90.0)) < range_of(RangeMethod::MinMax));
}

#[test]
fn bias_correction_removes_the_mean_shift_of_quantized_weights() {
    // One convolution fed inputs with a large mean: the weights' rounding error then shifts
    // every output channel's mean, which the corrected bias cancels.
    let mut b = ModelBuilder::new();
    let x = b.input(TensorSpec::new(DType::Float32, &SHAPE)).unwrap();
    let y = conv(&mut b, x, 5, ActivationFunction::None);
    b.output(y);
    let model = b.finish().unwrap();
    let shifted = Calibration {
        samples: (0..8)
            .map(|s| {
                vec![
                    values(SHAPE.iter().product(), 200 + s)
                        .iter()
                        .map(|v| 3.0 + 0.1 * v)
                        .collect(),
                ]
            })
            .collect(),
    };
    let mean_error = |correct: bool| {
        let mut options = options(Target::Octet);
        options.bias_correction = correct;
        let (q, _) = quantize(&model, &options, Some(&shifted)).unwrap();
        let mut per_channel = [0.0f64; 4];
        for sample in &shifted.samples {
            let (f, g) = (run(&model, &sample[0]), run(&q, &sample[0]));
            for (k, (a, b)) in f.chunks_exact(4).zip(g.chunks_exact(4)).enumerate() {
                let (a, b) = (
                    f32::from_le_bytes(a.try_into().unwrap()),
                    f32::from_le_bytes(b.try_into().unwrap()),
                );
                per_channel[k % 4] += f64::from(b - a);
            }
        }
        per_channel.iter().map(|e| e.abs()).sum::<f64>()
    };
    let (without, with) = (mean_error(false), mean_error(true));
    assert!(
        with < 0.5 * without,
        "mean error {with} with correction, {without} without"
    );
}

#[test]
fn sensitivity_ranks_layers_and_target_sqnr_keeps_the_worst_float() {
    let model = sandwich(Op::Relu6);
    let mut options = options(Target::Octet);
    options.sensitivity = true;
    let (q, report) = quantize(&model, &options, Some(&calibration())).unwrap();
    // Both convolutions are ranked (the RELU6 was folded into the first).
    let mut ranked: Vec<(usize, &str)> = report
        .sensitivity
        .iter()
        .map(|l| (l.index, l.op.as_str()))
        .collect();
    ranked.sort_unstable();
    assert_eq!(ranked, [(0, "CONV_2D"), (1, "CONV_2D")]);
    let whole = report.calibration_sqnr_db.unwrap();
    // Each layer alone loses less than both together.
    for layer in &report.sensitivity {
        assert!(layer.sqnr_db >= whole - 0.5, "{layer:?} vs {whole}");
    }
    assert!(report.float_ops.is_empty());
    q.validate().unwrap();
    // A target already met keeps nothing float; an unreachable one keeps everything float.
    options.sensitivity = false;
    options.target_sqnr = Some(whole - 1.0);
    let (_, report) = quantize(&model, &options, Some(&calibration())).unwrap();
    assert!(report.float_ops.is_empty());
    assert!(report.target_latency_ms.is_none());
    options.target_sqnr = Some(150.0);
    let (q, report) = quantize(&model, &options, Some(&calibration())).unwrap();
    assert_eq!(report.float_ops.len(), 2);
    assert!(
        report
            .float_ops
            .iter()
            .all(|f| f.reason == FloatReason::TargetSqnr)
    );
    assert!(report.calibration_sqnr_db.unwrap() > whole);
    let (all_int8, kept) = report.target_latency_ms.unwrap();
    assert!(all_int8 > 0.0 && kept > 0.0);
    q.validate().unwrap();
    // Integer-only cannot keep anything float, but its layers can be ranked (the measuring
    // models are octet's), and the file it writes is all integer.
    let mut options = options_for_integer_only();
    options.target_sqnr = Some(10.0);
    assert!(quantize(&model, &options, Some(&calibration())).is_err());
    options.target_sqnr = None;
    options.sensitivity = true;
    let (_, report) = quantize(&model, &options, Some(&calibration())).unwrap();
    assert_eq!(report.sensitivity.len(), 2);
    assert!(report.float_ops.is_empty());
}

fn options_for_integer_only() -> QuantizeOptions {
    options(Target::IntegerOnly)
}

/// DEPTHWISE_CONV_2D (RELU) -> CONV_2D 1x1, whose 4 channels in between differ in range by
/// up to 1000x: the pair equalization is for.
fn unbalanced_pair() -> Model {
    let mut b = ModelBuilder::new();
    let x = b.input(TensorSpec::new(DType::Float32, &SHAPE)).unwrap();
    let gains = [1.0f32, 0.1, 0.01, 0.001];
    let dw_w: Vec<f32> = (0..36).map(|k| values(36, 11)[k] * gains[k % 4]).collect();
    let dw_w = b
        .constant(
            TensorSpec::new(DType::Float32, &[1, 3, 3, 4]),
            TensorData::F32(dw_w),
        )
        .unwrap();
    let dw_b = b
        .constant(
            TensorSpec::new(DType::Float32, &[4]),
            TensorData::F32(vec![0.1, 0.01, 0.001, 0.0001]),
        )
        .unwrap();
    let dw = b
        .op(
            Op::DepthwiseConv2D(octet_core::DepthwiseConv2DOptions {
                padding: Padding::Same,
                stride_w: 1,
                stride_h: 1,
                depth_multiplier: 1,
                activation: ActivationFunction::Relu,
                dilation_w: 1,
                dilation_h: 1,
            }),
            &[Some(x), Some(dw_w), Some(dw_b)],
            TensorSpec::new(DType::Float32, &SHAPE),
        )
        .unwrap();
    // The 1x1 convolution reads every channel about equally in the output.
    let pw: Vec<f32> = (0..16).map(|k| values(16, 13)[k] / gains[k % 4]).collect();
    let pw = b
        .constant(
            TensorSpec::new(DType::Float32, &[4, 1, 1, 4]),
            TensorData::F32(pw),
        )
        .unwrap();
    let pb = b
        .constant(
            TensorSpec::new(DType::Float32, &[4]),
            TensorData::F32(vec![0.0; 4]),
        )
        .unwrap();
    let y = b
        .op(
            conv_options(ActivationFunction::None),
            &[Some(dw), Some(pw), Some(pb)],
            TensorSpec::new(DType::Float32, &SHAPE),
        )
        .unwrap();
    b.output(y);
    b.finish().unwrap()
}

#[test]
fn equalization_keeps_the_float_model_and_helps_the_int8_one() {
    let model = unbalanced_pair();
    let pairs = octet_quant::equalize::pairs(&model);
    assert_eq!(pairs.len(), 1);
    // Equalized with the tensor's own channel ranges, the float model computes the same.
    let mut equalized = model.clone();
    let ranges = [(0.0, 1.0), (0.0, 0.1), (0.0, 0.01), (0.0, 0.001)];
    let scales = octet_quant::equalize::equalize(&mut equalized, pairs[0], &ranges)
        .unwrap()
        .unwrap();
    assert!(scales.iter().all(|&s| s > 0.0 && s <= 1.0), "{scales:?}");
    let input = values(SHAPE.iter().product(), 21);
    let (a, b) = (run(&model, &input), run(&equalized, &input));
    for (x, y) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        let (x, y) = (
            f32::from_le_bytes(x.try_into().unwrap()),
            f32::from_le_bytes(y.try_into().unwrap()),
        );
        assert!((x - y).abs() <= 1e-4 * x.abs().max(1e-3), "{x} vs {y}");
    }
    // Quantized, the equalized model loses less.
    let sqnr = |equalization: bool| {
        let mut options = options(Target::Octet);
        options.equalization = equalization;
        options.sensitivity = true;
        let (_, report) = quantize(&model, &options, Some(&calibration())).unwrap();
        assert_eq!(report.equalized, usize::from(equalization));
        report.calibration_sqnr_db.unwrap()
    };
    let (without, with) = (sqnr(false), sqnr(true));
    assert!(
        with > without + 3.0,
        "{with} dB with equalization, {without} without"
    );
}

#[test]
fn multiplications_and_additions_by_constants_fold_into_the_convolution() {
    // CONV_2D -> MUL by a constant per channel -> ADD of one constant -> RELU.
    let mut b = ModelBuilder::new();
    let x = b.input(TensorSpec::new(DType::Float32, &SHAPE)).unwrap();
    let c = conv(&mut b, x, 1, ActivationFunction::None);
    let scale = b
        .constant(
            TensorSpec::new(DType::Float32, &[1, 1, 1, 4]),
            TensorData::F32(vec![0.5, -2.0, 1.5, 3.0]),
        )
        .unwrap();
    let m = b
        .op(
            Op::Mul {
                activation: ActivationFunction::None,
            },
            &[Some(c), Some(scale)],
            TensorSpec::new(DType::Float32, &SHAPE),
        )
        .unwrap();
    let shift = b
        .constant(
            TensorSpec::new(DType::Float32, &[1]),
            TensorData::F32(vec![0.25]),
        )
        .unwrap();
    let a = b
        .op(
            Op::Add(octet_core::AddOptions {
                activation: ActivationFunction::Relu,
                ..Default::default()
            }),
            &[Some(shift), Some(m)],
            TensorSpec::new(DType::Float32, &SHAPE),
        )
        .unwrap();
    b.output(a);
    let model = b.finish().unwrap();
    let mut folded = model.clone();
    assert_eq!(passes::fold_constant_affine(&mut folded).unwrap(), 2);
    assert_eq!(ops_of(&folded), ["CONV_2D"]);
    assert_eq!(
        folded.main_subgraph().unwrap().operators[0].op,
        conv_options(ActivationFunction::Relu)
    );
    folded.validate().unwrap();
    let input = values(SHAPE.iter().product(), 31);
    let (f, g) = (run(&model, &input), run(&folded, &input));
    for (p, q) in f.chunks_exact(4).zip(g.chunks_exact(4)) {
        let (p, q) = (
            f32::from_le_bytes(p.try_into().unwrap()),
            f32::from_le_bytes(q.try_into().unwrap()),
        );
        assert!((p - q).abs() <= 1e-5 * p.abs().max(1.0), "{p} vs {q}");
    }
    // Quantizing reports it.
    let (_, report) = quantize(&model, &options(Target::Litert), Some(&calibration())).unwrap();
    assert_eq!(report.constants_folded, 2);
    // A convolution whose output is read twice keeps its MUL.
    let mut b = ModelBuilder::new();
    let x = b.input(TensorSpec::new(DType::Float32, &SHAPE)).unwrap();
    let c = conv(&mut b, x, 1, ActivationFunction::None);
    let scale = b
        .constant(
            TensorSpec::new(DType::Float32, &[1]),
            TensorData::F32(vec![2.0]),
        )
        .unwrap();
    let m = b
        .op(
            Op::Mul {
                activation: ActivationFunction::None,
            },
            &[Some(c), Some(scale)],
            TensorSpec::new(DType::Float32, &SHAPE),
        )
        .unwrap();
    let s = b
        .op(
            Op::Add(Default::default()),
            &[Some(m), Some(c)],
            TensorSpec::new(DType::Float32, &SHAPE),
        )
        .unwrap();
    b.output(s);
    let mut model = b.finish().unwrap();
    assert_eq!(passes::fold_constant_affine(&mut model).unwrap(), 0);
}
