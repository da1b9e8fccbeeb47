//! `cargo xtask litert-ops`: which ops LiteRT's default CPU path (its XNNPACK delegate) runs in
//! int8 and in float, measured on one-op models, against the list `octet quantize --target
//! litert` keeps float (`octet_quant::litert_delegates_int8`).
//!
//! Each op is built as a float one-op model and quantized by octet for its own runtime (every
//! op integer), so the int8 file is QUANTIZE, the op, DEQUANTIZE. LiteRT delegates the op in
//! int8 when those three form one partition; the float model's op, when it forms one. A LiteRT
//! upgrade that changes the answer shows here as a disagreement with octet's list.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use octet_core::builder::{ModelBuilder, TensorSpec};
use octet_core::{
    ActivationFunction, ConcatenationOptions, DType, MirrorPadMode, Model, Op, Padding,
    Pool2DOptions, TensorData,
};
use octet_quant::{Calibration, Mode, QuantizeOptions, Target};
use serde::Deserialize;

use crate::venv::{self, Requirements};
use crate::workspace::Workspace;

/// The probe's activation shape.
const SHAPE: [usize; 4] = [1, 8, 8, 16];

/// One probe: a name, the op, its constant int32 inputs after the activation(s), whether it
/// has a second activation input (and its shape) and the output shape.
struct Probe {
    name: &'static str,
    op: Op,
    second: Option<Vec<usize>>,
    consts: Vec<(Vec<usize>, Vec<i32>)>,
    float_const: Option<(Vec<usize>, Vec<f32>)>,
    output: Vec<usize>,
}

fn probe(name: &'static str, op: Op, output: &[usize]) -> Probe {
    Probe {
        name,
        op,
        second: None,
        consts: Vec::new(),
        float_const: None,
        output: output.to_vec(),
    }
}

fn pool(filter: i32) -> Pool2DOptions {
    Pool2DOptions {
        padding: Padding::Valid,
        stride_w: 1,
        stride_h: 1,
        filter_width: filter,
        filter_height: filter,
        activation: ActivationFunction::None,
    }
}

fn probes() -> Vec<Probe> {
    let s = SHAPE.to_vec();
    let binary = |name, op| Probe {
        second: Some(SHAPE.to_vec()),
        ..probe(name, op, &SHAPE)
    };
    let with_consts = |name, op, consts: Vec<(Vec<usize>, Vec<i32>)>, out: &[usize]| Probe {
        consts,
        ..probe(name, op, out)
    };
    let paddings = vec![(vec![4, 2], vec![0, 0, 1, 1, 1, 1, 0, 0])];
    vec![
        probe("RELU", Op::Relu, &s),
        probe("RELU6", Op::Relu6, &s),
        probe("RELU_N1_TO_1", Op::ReluN1To1, &s),
        probe("LEAKY_RELU", Op::LeakyRelu { alpha: 0.2 }, &s),
        probe("HARD_SWISH", Op::HardSwish, &s),
        probe("LOGISTIC", Op::Logistic, &s),
        probe("TANH", Op::Tanh, &s),
        probe("SOFTMAX", Op::Softmax { beta: 1.0 }, &s),
        probe("LOG_SOFTMAX", Op::LogSoftmax, &s),
        probe(
            "L2_NORMALIZATION",
            Op::L2Normalization {
                activation: ActivationFunction::None,
            },
            &s,
        ),
        probe("MAX_POOL_2D", Op::MaxPool2D(pool(2)), &[1, 7, 7, 16]),
        probe(
            "AVERAGE_POOL_2D",
            Op::AveragePool2D(pool(2)),
            &[1, 7, 7, 16],
        ),
        probe(
            "DEPTH_TO_SPACE",
            Op::DepthToSpace { block_size: 2 },
            &[1, 16, 16, 4],
        ),
        probe(
            "SPACE_TO_DEPTH",
            Op::SpaceToDepth { block_size: 2 },
            &[1, 4, 4, 64],
        ),
        probe(
            "SQUEEZE",
            Op::Squeeze {
                squeeze_dims: vec![0],
            },
            &[8, 8, 16],
        ),
        binary("ADD", Op::Add(Default::default())),
        binary("SUB", Op::Sub(Default::default())),
        binary(
            "MUL",
            Op::Mul {
                activation: ActivationFunction::None,
            },
        ),
        binary("MAXIMUM", Op::Maximum),
        binary("MINIMUM", Op::Minimum),
        Probe {
            output: vec![1, 8, 8, 32],
            ..binary(
                "CONCATENATION",
                Op::Concatenation(ConcatenationOptions {
                    axis: 3,
                    activation: ActivationFunction::None,
                }),
            )
        },
        Probe {
            second: Some(vec![1, 8, 16, 8]),
            ..probe(
                "BATCH_MATMUL",
                Op::BatchMatMul(Default::default()),
                &[1, 8, 8, 8],
            )
        },
        Probe {
            float_const: Some((vec![1, 1, 16], (0..16).map(|i| i as f32 / 20.0).collect())),
            ..probe("PRELU", Op::Prelu, &s)
        },
        with_consts(
            "MEAN",
            Op::Mean { keep_dims: true },
            vec![(vec![2], vec![1, 2])],
            &[1, 1, 1, 16],
        ),
        with_consts(
            "REDUCE_MAX",
            Op::ReduceMax { keep_dims: true },
            vec![(vec![2], vec![1, 2])],
            &[1, 1, 1, 16],
        ),
        with_consts(
            "TRANSPOSE",
            Op::Transpose,
            vec![(vec![4], vec![0, 2, 1, 3])],
            &s,
        ),
        with_consts(
            "SLICE",
            Op::Slice,
            vec![(vec![4], vec![0, 1, 1, 0]), (vec![4], vec![1, 6, 6, 16])],
            &[1, 6, 6, 16],
        ),
        with_consts(
            "STRIDED_SLICE",
            Op::StridedSlice(Default::default()),
            vec![
                (vec![4], vec![0, 0, 0, 0]),
                (vec![4], vec![1, 8, 8, 16]),
                (vec![4], vec![1, 2, 2, 1]),
            ],
            &[1, 4, 4, 16],
        ),
        with_consts(
            "RESHAPE",
            Op::Reshape { new_shape: None },
            vec![(vec![2], vec![64, 16])],
            &[64, 16],
        ),
        with_consts("PAD", Op::Pad, paddings.clone(), &[1, 10, 10, 16]),
        with_consts(
            "MIRROR_PAD",
            Op::MirrorPad {
                mode: MirrorPadMode::Reflect,
            },
            paddings,
            &[1, 10, 10, 16],
        ),
        with_consts(
            "RESIZE_BILINEAR",
            Op::ResizeBilinear(Default::default()),
            vec![(vec![2], vec![16, 16])],
            &[1, 16, 16, 16],
        ),
        with_consts(
            "RESIZE_NEAREST_NEIGHBOR",
            Op::ResizeNearestNeighbor(Default::default()),
            vec![(vec![2], vec![16, 16])],
            &[1, 16, 16, 16],
        ),
    ]
}

/// The float one-op model of `p`.
fn build(p: &Probe) -> Result<Model> {
    let f = DType::Float32;
    let mut b = ModelBuilder::new();
    let mut inputs = vec![Some(b.input(TensorSpec::new(f, &SHAPE))?)];
    if let Some(shape) = &p.second {
        inputs.push(Some(b.input(TensorSpec::new(f, shape))?));
    }
    if let Some((shape, values)) = &p.float_const {
        inputs.push(Some(b.constant(
            TensorSpec::new(f, shape),
            TensorData::F32(values.clone()),
        )?));
    }
    for (shape, values) in &p.consts {
        inputs.push(Some(b.constant(
            TensorSpec::new(DType::Int32, shape),
            TensorData::I32(values.clone()),
        )?));
    }
    let y = b.op(p.op.clone(), &inputs, TensorSpec::new(f, &p.output))?;
    b.output(y);
    Ok(b.finish()?)
}

/// Seeded calibration samples in [-1, 1) for every input of `model`.
fn calibration(model: &Model) -> Result<Calibration> {
    let sg = model.main_subgraph().context("no main subgraph")?;
    let mut state = 1u32;
    let mut next = move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    };
    let mut samples = Vec::new();
    for _ in 0..4 {
        let mut sample = Vec::new();
        for &id in &sg.inputs {
            let n = sg
                .tensor(id)
                .context("input tensor")?
                .shape
                .num_elements()?;
            sample.push((0..n).map(|_| next()).collect());
        }
        samples.push(sample);
    }
    Ok(Calibration { samples })
}

#[derive(Deserialize)]
struct Split {
    partitions: usize,
}

fn partitions(venv: &venv::Venv, workspace: &Workspace, files: &[PathBuf]) -> Result<Vec<usize>> {
    let stdout = crate::process::stdout_of(
        venv.python_command()
            .arg(workspace.python_script("litert_delegation.py"))
            .args(files),
    )?;
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| Ok(serde_json::from_str::<Split>(l)?.partitions))
        .collect()
}

fn write(model: &Model, path: &Path) -> Result<()> {
    octet_tflite::write_file(path, model)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Builds, quantizes and loads every probe; prints the table and fails where octet's list
/// disagrees with LiteRT.
pub fn run(workspace: &Workspace) -> Result<()> {
    let venv = venv::ensure(workspace, Requirements::Check)?;
    let dir = workspace.cache_dir("litert-ops");
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    let (mut float_files, mut int8_files) = (Vec::new(), Vec::new());
    for p in probes() {
        let model = build(&p).with_context(|| format!("building the {} probe", p.name))?;
        let float_file = dir.join(format!("{}.float.tflite", p.name));
        write(&model, &float_file)?;
        let mut options = QuantizeOptions::new(Mode::Int8);
        options.target = Target::Octet;
        let (q, report) = octet_quant::quantize(&model, &options, Some(&calibration(&model)?))
            .with_context(|| format!("quantizing the {} probe", p.name))?;
        let int8 = report.float_ops.is_empty();
        if int8 {
            let file = dir.join(format!("{}.int8.tflite", p.name));
            write(&q, &file)?;
            int8_files.push(file);
        }
        float_files.push(float_file);
        rows.push((p, int8));
    }
    let float_splits = partitions(&venv, workspace, &float_files)?;
    let mut int8_splits = partitions(&venv, workspace, &int8_files)?.into_iter();
    println!(
        "{:<26} {:<16} {:<16} octet --target litert",
        "op", "LiteRT float", "LiteRT int8"
    );
    let mut disagreements = Vec::new();
    for ((p, int8), float_split) in rows.iter().zip(float_splits) {
        let float_delegated = float_split >= 1;
        let int8_delegated = if *int8 {
            int8_splits.next().map(|n| n == 1)
        } else {
            None
        };
        let octet_keeps_int8 = octet_quant::litert_delegates_int8(&p.op);
        let yes_no = |b: bool| if b { "delegated" } else { "not delegated" };
        println!(
            "{:<26} {:<16} {:<16} {}",
            p.name,
            yes_no(float_delegated),
            int8_delegated.map_or("no int8 rule", yes_no),
            if octet_keeps_int8 { "int8" } else { "float" }
        );
        // octet keeps an op float exactly when LiteRT delegates it in float and not in int8.
        if let Some(int8_delegated) = int8_delegated {
            let should_keep_int8 = int8_delegated || !float_delegated;
            if should_keep_int8 != octet_keeps_int8 {
                disagreements.push(p.name);
            }
        }
    }
    if !disagreements.is_empty() {
        bail!(
            "octet_quant::litert_delegates_int8 disagrees with this LiteRT on: {}",
            disagreements.join(", ")
        );
    }
    println!("octet's --target litert list agrees with this LiteRT");
    Ok(())
}
