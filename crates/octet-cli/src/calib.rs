//! Calibration data for `octet quantize --calib`: a `.npy` (leading sample dimension), a `.npz`
//! (one array per input), a directory of `.npy` files or of PNG/JPEG images, or `random[:MIN,MAX]`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use octet_core::DType;
use octet_quant::Calibration;
use octet_runtime::TensorInfo;

use crate::npy::{read_data, read_header};

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
    // Per input: how many samples the data holds, and the first `keep` of them as values.
    let keep = limit.unwrap_or(usize::MAX);
    let per_input: Vec<(usize, Vec<Vec<f32>>)> = match source {
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
                    let samples = (0..n)
                        .map(|_| {
                            (0..info.num_elements())
                                .map(|_| min + (max - min) * next() as f32)
                                .collect()
                        })
                        .collect();
                    (n, samples)
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
            vec![read_npy_samples(path, info, 0, keep)?]
        }
        CalibSource::Npz(path) => read_npz(path, inputs, keep)?,
        CalibSource::Dir(dir) => {
            let [info] = inputs else {
                bail!(
                    "the model has {} inputs; a directory calibrates single-input models (use a .npz)",
                    inputs.len()
                );
            };
            let samples = read_dir(dir, info, image_stats)?;
            vec![(samples.len(), samples)]
        }
    };
    let count = per_input.iter().map(|p| p.0).min().unwrap_or(0);
    if per_input.iter().any(|p| p.0 != count) {
        bail!("the calibration arrays hold different numbers of samples per input");
    }
    let count = limit.map_or(count, |l| count.min(l));
    if count == 0 {
        bail!("the calibration data holds no samples");
    }
    // Per input, per sample -> per sample, per input (moved, not copied).
    let mut samples: Vec<Vec<Vec<f32>>> = (0..count)
        .map(|_| Vec::with_capacity(per_input.len()))
        .collect();
    for (_, input) in per_input {
        for (sample, values) in samples.iter_mut().zip(input) {
            sample.push(values);
        }
    }
    Ok(Calibration { samples })
}

/// How many samples of input `index` an array shaped `shape` holds: one if shaped like the
/// input, `N` if shaped `[N, ...]` of it.
fn sample_count(shape: &[usize], info: &TensorInfo, index: usize, file: &Path) -> Result<usize> {
    if shape == info.shape {
        Ok(1)
    } else if shape.len() == info.shape.len() + 1 && shape[1..] == info.shape[..] {
        Ok(shape[0])
    } else {
        bail!(
            "{}: calibration data for input {index} ('{}') must have shape {:?} or [N, ...] of it, got {:?}",
            file.display(),
            info.name,
            info.shape,
            shape
        );
    }
}

/// One sample's values from its little-endian bytes (float32, float64 or uint8).
fn values_of(bytes: &[u8], dtype: DType) -> Vec<f32> {
    match dtype {
        DType::Float32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        DType::Float64 => bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                f64::from_le_bytes(b) as f32
            })
            .collect(),
        _ => bytes.iter().map(|&b| f32::from(b)).collect(),
    }
}

/// Reads samples of input `index` from `.npy` data (`available` bytes at most): an array shaped
/// like the input (one sample) or with a leading sample dimension, of float32, float64 or uint8
/// values. Returns how many samples the array holds and the values of the first `keep` of
/// them, read one sample at a time (no copy of the whole array is made).
fn read_samples(
    reader: impl Read,
    available: u64,
    info: &TensorInfo,
    index: usize,
    file: &Path,
    keep: usize,
) -> Result<(usize, Vec<Vec<f32>>)> {
    let (header, npy) = read_header(reader, available, file)?;
    let count = sample_count(&header.shape, info, index, file)?;
    let item = match header.dtype {
        DType::Float32 => 4,
        DType::Float64 => 8,
        DType::UInt8 => 1,
        other => bail!(
            "{}: calibration data for input {index} ('{}') must be float32, float64 or uint8, got {other}",
            file.display(),
            info.name
        ),
    };
    let sample_bytes = info.num_elements().max(1) * item;
    let held = count.min(header.data_len / sample_bytes);
    let wanted = held.min(keep);
    let mut samples = Vec::new();
    if header.little_endian {
        let mut data = npy.into_inner();
        let mut buffer = vec![0u8; sample_bytes];
        for _ in 0..wanted {
            data.read_exact(&mut buffer)
                .with_context(|| format!("{}: truncated array data", file.display()))?;
            samples.push(values_of(&buffer, header.dtype));
        }
    } else {
        let bytes = read_data(&header, npy, file)?;
        samples.extend(
            bytes
                .chunks_exact(sample_bytes)
                .take(wanted)
                .map(|b| values_of(b, header.dtype)),
        );
    }
    Ok((held, samples))
}

/// [`read_samples`] from a `.npy` file.
fn read_npy_samples(
    path: &Path,
    info: &TensorInfo,
    index: usize,
    keep: usize,
) -> Result<(usize, Vec<Vec<f32>>)> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let available = file.metadata().map_or(u64::MAX, |m| m.len());
    read_samples(
        std::io::BufReader::new(file),
        available,
        info,
        index,
        path,
        keep,
    )
}

fn read_npz(
    path: &Path,
    inputs: &[TensorInfo],
    keep: usize,
) -> Result<Vec<(usize, Vec<Vec<f32>>)>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .with_context(|| format!("{} is not a valid .npz", path.display()))?;
    let mut names: Vec<(String, usize)> = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let name = archive
            .name_for_index(i)
            .with_context(|| format!("{}: no entry {i}", path.display()))??;
        names.push((name.trim_end_matches(".npy").to_owned(), i));
    }
    if names.len() != inputs.len() {
        bail!(
            "{} holds {} arrays, the model has {} inputs",
            path.display(),
            names.len(),
            inputs.len()
        );
    }
    // By input name when every input is named in the archive, else in key order.
    let by_name = inputs
        .iter()
        .all(|info| names.iter().any(|(k, _)| *k == info.name));
    if !by_name {
        names.sort_by(|a, b| a.0.cmp(&b.0));
    }
    inputs
        .iter()
        .enumerate()
        .map(|(i, info)| {
            let position = if by_name {
                names.iter().position(|(k, _)| *k == info.name).unwrap_or(i)
            } else {
                i
            };
            let (name, entry) = names
                .get(position)
                .with_context(|| format!("no array for input {i}"))?;
            let entry = archive.by_index(*entry)?;
            let available = entry.size();
            read_samples(entry, available, info, i, &path.join(name), keep)
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
            Some("npy") => samples.extend(read_npy_samples(file, info, 0, usize::MAX)?.1),
            Some("png" | "jpg" | "jpeg") => samples.push(read_image(file, info, stats)?),
            _ => {}
        }
    }
    if samples.is_empty() {
        bail!("{} holds no .npy, PNG or JPEG files", dir.display());
    }
    Ok(samples)
}

/// Set once the resizing of calibration images has been mentioned.
static RESIZE_NOTED: AtomicBool = AtomicBool::new(false);

/// Whether `dir` holds PNG or JPEG files.
pub fn holds_images(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let ext = e.path().extension().map(|x| x.to_ascii_lowercase());
            matches!(
                ext.as_deref().and_then(|x| x.to_str()),
                Some("png" | "jpg" | "jpeg")
            )
        })
    })
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
    if (image.width(), image.height()) != (w, h) && !RESIZE_NOTED.swap(true, Ordering::Relaxed) {
        eprintln!(
            "note: calibration images are resized to {w}x{h} (the model's input); {} is {}x{}",
            file.display(),
            image.width(),
            image.height()
        );
    }
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
