//! Calibration data for `octet quantize --calib`: a `.npy` (leading sample dimension), a `.npz`
//! (one array per input), a directory of `.npy` files or of PNG/JPEG images, or `random[:MIN,MAX]`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use octet_core::DType;
use octet_quant::Calibration;
use octet_runtime::TensorInfo;

use crate::npy::{Array, parse_npy, read_npy};

/// Where calibration samples come from.
#[derive(Debug, Clone, PartialEq)]
pub enum CalibSource {
    /// One `.npy` for a single-input model.
    Npy(PathBuf),
    /// One `.npz` with an array per input (by input name, or in key order).
    Npz(PathBuf),
    /// A directory of `.npy` files or images (single-input models).
    Dir(PathBuf),
    /// Uniform random values.
    Random {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
}

impl CalibSource {
    /// Parses the `--calib` value.
    pub fn parse(text: &str) -> Result<Self> {
        if let Some(rest) = text.strip_prefix("random") {
            let (min, max): (f32, f32) = match rest.strip_prefix(':') {
                None if rest.is_empty() => (-1.0, 1.0),
                Some(range) => {
                    let (a, b) = range
                        .split_once(',')
                        .with_context(|| format!("--calib random:MIN,MAX, got {text:?}"))?;
                    (a.trim().parse()?, b.trim().parse()?)
                }
                None => bail!("--calib random or random:MIN,MAX, got {text:?}"),
            };
            if min >= max || !min.is_finite() || !max.is_finite() {
                bail!("--calib {text}: MIN must be below MAX");
            }
            return Ok(CalibSource::Random { min, max });
        }
        let path = PathBuf::from(text);
        if path.is_dir() {
            return Ok(CalibSource::Dir(path));
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => Ok(CalibSource::Npy(path)),
            Some("npz") => Ok(CalibSource::Npz(path)),
            _ => {
                bail!("--calib takes a .npy, a .npz, a directory or random[:MIN,MAX], got {text:?}")
            }
        }
    }
}

/// How images are turned into input values: `(pixel - mean) / std_dev`.
#[derive(Debug, Clone, Copy)]
pub struct ImageStats {
    /// Subtracted from each 0..255 pixel value.
    pub mean: f32,
    /// Divides the result.
    pub std_dev: f32,
}

/// Loads calibration samples for a model whose inputs are `inputs`, using at most `limit`
/// samples (random data: exactly `limit`, default 100).
pub fn load(
    source: &CalibSource,
    inputs: &[TensorInfo],
    limit: Option<usize>,
    image_stats: ImageStats,
) -> Result<Calibration> {
    for (i, info) in inputs.iter().enumerate() {
        if info.dtype != DType::Float32 {
            bail!(
                "input {i} ('{}') is {}: calibration needs a float model (float32 inputs)",
                info.name,
                info.dtype
            );
        }
    }
    let per_input: Vec<Vec<Vec<f32>>> = match source {
        CalibSource::Random { min, max } => {
            let n = limit.unwrap_or(100);
            let mut state = 0x0c7e_7ca1_u64;
            let mut next = move || {
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                (z ^ (z >> 31)) as f64 / u64::MAX as f64
            };
            inputs
                .iter()
                .map(|info| {
                    (0..n)
                        .map(|_| {
                            (0..info.num_elements())
                                .map(|_| min + (max - min) * next() as f32)
                                .collect()
                        })
                        .collect()
                })
                .collect()
        }
        CalibSource::Npy(path) => {
            let [info] = inputs else {
                bail!(
                    "the model has {} inputs; a single .npy calibrates one input (use a .npz with one array per input)",
                    inputs.len()
                );
            };
            vec![samples_of(read_npy(path)?, info, 0, path)?]
        }
        CalibSource::Npz(path) => read_npz(path, inputs)?,
        CalibSource::Dir(dir) => {
            let [info] = inputs else {
                bail!(
                    "the model has {} inputs; a directory calibrates single-input models (use a .npz)",
                    inputs.len()
                );
            };
            vec![read_dir(dir, info, image_stats)?]
        }
    };
    let count = per_input.iter().map(Vec::len).min().unwrap_or(0);
    if per_input.iter().any(|s| s.len() != count) {
        bail!("the calibration arrays hold different numbers of samples per input");
    }
    let count = limit.map_or(count, |l| count.min(l));
    if count == 0 {
        bail!("the calibration data holds no samples");
    }
    Ok(Calibration {
        samples: (0..count)
            .map(|s| per_input.iter().map(|input| input[s].clone()).collect())
            .collect(),
    })
}

/// Splits an array into samples of input `index`: shaped like the input (one sample) or with a
/// leading sample dimension; float32, float64 or uint8 values.
fn samples_of(array: Array, info: &TensorInfo, index: usize, file: &Path) -> Result<Vec<Vec<f32>>> {
    let per_sample = info.num_elements();
    let count = if array.shape == info.shape {
        1
    } else if array.shape.len() == info.shape.len() + 1 && array.shape[1..] == info.shape[..] {
        array.shape[0]
    } else {
        bail!(
            "{}: calibration data for input {index} ('{}') must have shape {:?} or [N, ...] of it, got {:?}",
            file.display(),
            info.name,
            info.shape,
            array.shape
        );
    };
    let values: Vec<f32> = match array.dtype {
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
        DType::UInt8 => array.bytes.iter().map(|&b| f32::from(b)).collect(),
        other => bail!(
            "{}: calibration data for input {index} ('{}') must be float32, float64 or uint8, got {other}",
            file.display(),
            info.name
        ),
    };
    Ok(values
        .chunks_exact(per_sample.max(1))
        .take(count)
        .map(<[f32]>::to_vec)
        .collect())
}

fn read_npz(path: &Path, inputs: &[TensorInfo]) -> Result<Vec<Vec<Vec<f32>>>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a valid .npz", path.display()))?;
    let mut arrays: Vec<(String, Array)> = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let name = entry.name()?.trim_end_matches(".npy").to_owned();
        let size = usize::try_from(entry.size()).unwrap_or(usize::MAX);
        let mut bytes = Vec::with_capacity(size.min(1 << 30));
        entry.read_to_end(&mut bytes)?;
        let label = path.join(&name);
        arrays.push((name, parse_npy(&bytes, &label)?));
    }
    if arrays.len() != inputs.len() {
        bail!(
            "{} holds {} arrays, the model has {} inputs",
            path.display(),
            arrays.len(),
            inputs.len()
        );
    }
    // By input name when every input is named in the archive, else in key order.
    let by_name = inputs
        .iter()
        .all(|info| arrays.iter().any(|(k, _)| *k == info.name));
    if !by_name {
        arrays.sort_by(|a, b| a.0.cmp(&b.0));
    }
    inputs
        .iter()
        .enumerate()
        .map(|(i, info)| {
            let position = if by_name {
                arrays
                    .iter()
                    .position(|(k, _)| *k == info.name)
                    .unwrap_or(i)
            } else {
                i
            };
            let (name, array) = arrays
                .get(position)
                .cloned()
                .with_context(|| format!("no array for input {i}"))?;
            samples_of(array, info, i, &path.join(name))
        })
        .collect()
}

fn read_dir(dir: &Path, info: &TensorInfo, stats: ImageStats) -> Result<Vec<Vec<f32>>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut samples = Vec::new();
    for file in &files {
        let ext = file
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("npy") => samples.extend(samples_of(read_npy(file)?, info, 0, file)?),
            Some("png" | "jpg" | "jpeg") => samples.push(read_image(file, info, stats)?),
            _ => {}
        }
    }
    if samples.is_empty() {
        bail!("{} holds no .npy, PNG or JPEG files", dir.display());
    }
    Ok(samples)
}

/// An image resized (bilinear) to the input's height and width, in its channel count (1 or 3),
/// mapped to floats with `(pixel - mean) / std_dev`.
fn read_image(file: &Path, info: &TensorInfo, stats: ImageStats) -> Result<Vec<f32>> {
    let (height, width, channels) = match info.shape.as_slice() {
        [1, h, w, c] | [h, w, c] if *c == 1 || *c == 3 => (*h, *w, *c),
        _ => bail!(
            "input '{}' has shape {:?}: images calibrate inputs shaped [1, H, W, 1 or 3]",
            info.name,
            info.shape
        ),
    };
    let image = image::open(file).with_context(|| format!("cannot decode {}", file.display()))?;
    let (w, h) = (u32::try_from(width)?, u32::try_from(height)?);
    let filter = image::imageops::FilterType::Triangle;
    let pixels: Vec<u8> = if channels == 1 {
        image::imageops::resize(&image.to_luma8(), w, h, filter).into_raw()
    } else {
        image::imageops::resize(&image.to_rgb8(), w, h, filter).into_raw()
    };
    Ok(pixels
        .iter()
        .map(|&p| (f32::from(p) - stats.mean) / stats.std_dev)
        .collect())
}
