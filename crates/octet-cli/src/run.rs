//! `octet run MODEL --input X.npy [--input Y.npy ...] --output-dir DIR`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use octet_core::DType;
use octet_runtime::{Interpreter, InterpreterOptions, Isa, TensorInfo};

use crate::npy::{Array, read_npy, write_npy};

/// Arguments of `octet run`.
#[derive(Args)]
pub struct RunArgs {
    /// The .tflite model.
    model: PathBuf,
    /// One .npy per model input, in input order. Shaped like the input for one sample, or with
    /// one extra leading dimension N for N samples. float32 data for an int8/uint8/int16 input
    /// is quantized with the input's parameters.
    #[arg(long = "input", value_name = "X.npy", required = true)]
    inputs: Vec<PathBuf>,
    /// Where to write output_0.npy, output_1.npy, ...
    #[arg(long, value_name = "DIR")]
    output_dir: PathBuf,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// How the runtime runs a model: threads and instruction set (`run`, `bench`, `compare`,
/// `quantize`).
#[derive(Args, Clone, Debug, Default)]
pub struct RuntimeArgs {
    /// Threads to split each operator's work over [default: all cores; 1 for `bench`].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Use the micro-kernels of this instruction set (generic, avx2, avx512, avx512vnni)
    /// instead of the best one the CPU has: for comparing them. Results do not change.
    #[arg(long, value_name = "ISA")]
    pub isa: Option<Isa>,
}

impl RuntimeArgs {
    /// The interpreter options, with `default_threads` when `--threads` is not given.
    pub fn options(&self, default_threads: usize) -> Result<InterpreterOptions> {
        let threads = self.threads.unwrap_or(default_threads);
        if threads == 0 {
            bail!("--threads must be at least 1");
        }
        Ok(InterpreterOptions {
            threads,
            isa: self.isa,
        })
    }
}

/// All cores of this machine.
pub fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// One model input's data, ready to feed: `samples` consecutive samples in the input's dtype.
pub(crate) struct Feed {
    pub(crate) samples: Option<usize>,
    pub(crate) bytes: Vec<u8>,
    pub(crate) sample_bytes: usize,
}

/// Loads the model and prepares the interpreter, with the file named in errors.
pub fn load_interpreter(path: &Path, options: InterpreterOptions) -> Result<Interpreter> {
    let model =
        octet_tflite::read_file(path).with_context(|| format!("cannot load {}", path.display()))?;
    Interpreter::with_options(&model, options)
        .with_context(|| format!("cannot run {}", path.display()))
}

/// TFLite's `AffineQuantize`: `round(x / scale) + zero_point`, clamped to the dtype.
fn quantize(values: &[f32], info: &TensorInfo, index: usize) -> Result<Vec<u8>> {
    let Some((scale, zero_point)) = info.scale_zero_point() else {
        bail!(
            "input {index} ('{}') is {} without per-tensor quantization parameters; give it {} data",
            info.name,
            info.dtype,
            info.dtype
        );
    };
    let q = |x: f32, lo: f32, hi: f32| ((x / scale).round() + zero_point as f32).clamp(lo, hi);
    Ok(match info.dtype {
        DType::Int8 => values
            .iter()
            .map(|&x| q(x, -128.0, 127.0) as i8 as u8)
            .collect(),
        DType::UInt8 => values.iter().map(|&x| q(x, 0.0, 255.0) as u8).collect(),
        DType::Int16 => values
            .iter()
            .flat_map(|&x| (q(x, -32768.0, 32767.0) as i16).to_le_bytes())
            .collect(),
        other => bail!(
            "input {index} ('{}') is {other}; float data cannot be fed to it",
            info.name
        ),
    })
}

/// Checks an array against a model input and converts it to the input's dtype.
pub(crate) fn feed(array: Array, info: &TensorInfo, index: usize, file: &Path) -> Result<Feed> {
    let samples = if array.shape == info.shape {
        None
    } else if array.shape.len() == info.shape.len() + 1 && array.shape[1..] == info.shape[..] {
        Some(array.shape[0])
    } else {
        bail!(
            "{}: input {index} ('{}') expects shape {:?} (or [N, ...] for N samples), got {:?}",
            file.display(),
            info.name,
            info.shape,
            array.shape
        );
    };
    let bytes = if array.dtype == info.dtype {
        array.bytes
    } else {
        let floats: Vec<f32> = match array.dtype {
            DType::Float32 => array
                .bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::Float64 => array
                .bytes
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    f64::from_le_bytes(b) as f32
                })
                .collect(),
            other => bail!(
                "{}: input {index} ('{}') is {}, got {other} data",
                file.display(),
                info.name,
                info.dtype
            ),
        };
        if info.dtype == DType::Float32 {
            floats.iter().flat_map(|x| x.to_le_bytes()).collect()
        } else {
            quantize(&floats, info, index).with_context(|| file.display().to_string())?
        }
    };
    Ok(Feed {
        samples,
        sample_bytes: info.byte_len(),
        bytes,
    })
}

/// Runs `octet run`.
pub fn run(args: &RunArgs) -> Result<()> {
    let mut interpreter = load_interpreter(&args.model, args.runtime.options(all_cores())?)?;
    if args.inputs.len() != interpreter.num_inputs() {
        bail!(
            "the model has {} input(s), {} --input given",
            interpreter.num_inputs(),
            args.inputs.len()
        );
    }
    let mut feeds = Vec::new();
    for (i, file) in args.inputs.iter().enumerate() {
        let array = read_npy(file)?;
        feeds.push(feed(array, interpreter.input_info(i)?, i, file)?);
    }
    let samples = feeds[0].samples;
    if feeds.iter().any(|f| f.samples != samples) {
        bail!("all inputs must have the same leading sample dimension (or none)");
    }
    let count = samples.unwrap_or(1);
    let mut outputs: Vec<Vec<u8>> = vec![Vec::new(); interpreter.num_outputs()];
    for s in 0..count {
        for (i, f) in feeds.iter().enumerate() {
            let start = s * f.sample_bytes;
            interpreter.set_input(i, &f.bytes[start..start + f.sample_bytes])?;
        }
        interpreter
            .invoke()
            .with_context(|| format!("sample {s} of {count}"))?;
        for (k, out) in outputs.iter_mut().enumerate() {
            out.extend_from_slice(interpreter.output(k)?);
        }
    }
    std::fs::create_dir_all(&args.output_dir)
        .with_context(|| format!("cannot create {}", args.output_dir.display()))?;
    for (k, bytes) in outputs.into_iter().enumerate() {
        let info = interpreter.output_info(k)?;
        let mut shape = info.shape.clone();
        if let Some(n) = samples {
            shape.insert(0, n);
        }
        let path = args.output_dir.join(format!("output_{k}.npy"));
        write_npy(
            &path,
            &Array {
                dtype: info.dtype,
                shape,
                bytes,
            },
        )?;
    }
    Ok(())
}
