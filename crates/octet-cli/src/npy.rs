//! `.npy` arrays in and out, as raw little-endian bytes tagged with an octet dtype.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use half::f16;
use octet_core::DType;

/// A dense array read from or written to a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Element type.
    pub dtype: DType,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Elements, little-endian.
    pub bytes: Vec<u8>,
}

/// numpy's type string for a dtype octet writes.
fn typestr(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::Float32 => "<f4",
        DType::Float64 => "<f8",
        DType::Float16 => "<f2",
        DType::Int8 => "|i1",
        DType::UInt8 => "|u1",
        DType::Int16 => "<i2",
        DType::UInt16 => "<u2",
        DType::Int32 => "<i4",
        DType::UInt32 => "<u4",
        DType::Int64 => "<i8",
        DType::UInt64 => "<u8",
        DType::Bool => "|b1",
        _ => return None,
    })
}

fn le_bytes<T: npyz::Deserialize, const N: usize>(
    npy: npyz::NpyFile<impl Read>,
    to_le: impl Fn(T) -> [u8; N],
) -> Result<Vec<u8>> {
    Ok(npy.into_vec::<T>()?.into_iter().flat_map(to_le).collect())
}

/// What a `.npy` header says, checked: a plain numeric array in C order whose data fits in the
/// bytes available.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Element type.
    pub dtype: DType,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Bytes of data.
    pub data_len: usize,
    /// True when the data is stored little-endian (or in single bytes), so its bytes are the
    /// array's bytes as they are.
    pub little_endian: bool,
}

/// Reads and checks a `.npy` header from `reader`, which is left at the start of the data.
/// `available` bounds the bytes the whole file may hold, so a damaged header cannot promise
/// more than is there (and cause a huge allocation); `path` names the data in errors.
pub fn read_header<R: Read>(
    reader: R,
    available: u64,
    path: &Path,
) -> Result<(Header, npyz::NpyFile<R>)> {
    let npy = npyz::NpyFile::new(reader)
        .with_context(|| format!("{} is not a valid .npy file", path.display()))?;
    let npyz::DType::Plain(ts) = npy.dtype() else {
        bail!("{}: structured arrays are not supported", path.display());
    };
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .context("array dimension too large")?;
    let elements = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .context("array size overflows")?;
    let item = usize::try_from(ts.size_field()).unwrap_or(usize::MAX);
    let data_len = elements.checked_mul(item).context("array size overflows")?;
    if data_len as u64 > available {
        bail!(
            "{}: header promises {data_len} bytes of data, the file has {available}",
            path.display(),
        );
    }
    if npy.order() == npyz::Order::Fortran && shape.len() > 1 {
        bail!(
            "{}: Fortran-ordered arrays are not supported",
            path.display()
        );
    }
    let descr = ts.to_string();
    let kind = descr.trim_start_matches(['<', '>', '|', '=']);
    let dtype = match kind {
        "f4" => DType::Float32,
        "f8" => DType::Float64,
        "f2" => DType::Float16,
        "i1" => DType::Int8,
        "u1" => DType::UInt8,
        "i2" => DType::Int16,
        "u2" => DType::UInt16,
        "i4" => DType::Int32,
        "u4" => DType::UInt32,
        "i8" => DType::Int64,
        "u8" => DType::UInt64,
        "b1" => DType::Bool,
        other => bail!("{}: unsupported dtype {other}", path.display()),
    };
    // Booleans go through npyz, which checks that every byte is 0 or 1.
    let little_endian = descr.starts_with(['<', '|']) && dtype != DType::Bool;
    let header = Header {
        dtype,
        shape,
        data_len,
        little_endian,
    };
    Ok((header, npy))
}

/// Reads the data after `header` (see [`read_header`]) as little-endian bytes.
pub fn read_data(header: &Header, npy: npyz::NpyFile<impl Read>, path: &Path) -> Result<Vec<u8>> {
    let data = if header.little_endian {
        let mut data = Vec::with_capacity(header.data_len);
        npy.into_inner()
            .take(header.data_len as u64)
            .read_to_end(&mut data)?;
        data
    } else {
        match header.dtype {
            DType::Float32 => le_bytes(npy, f32::to_le_bytes)?,
            DType::Float64 => le_bytes(npy, f64::to_le_bytes)?,
            DType::Float16 => le_bytes(npy, f16::to_le_bytes)?,
            DType::Int8 => le_bytes(npy, i8::to_le_bytes)?,
            DType::UInt8 => le_bytes(npy, u8::to_le_bytes)?,
            DType::Int16 => le_bytes(npy, i16::to_le_bytes)?,
            DType::UInt16 => le_bytes(npy, u16::to_le_bytes)?,
            DType::Int32 => le_bytes(npy, i32::to_le_bytes)?,
            DType::UInt32 => le_bytes(npy, u32::to_le_bytes)?,
            DType::Int64 => le_bytes(npy, i64::to_le_bytes)?,
            DType::UInt64 => le_bytes(npy, u64::to_le_bytes)?,
            _ => le_bytes(npy, |b: bool| [u8::from(b)])?,
        }
    };
    if data.len() != header.data_len {
        bail!("{}: truncated array data", path.display());
    }
    Ok(data)
}

/// Reads a `.npy` file. Only plain numeric arrays are accepted; the header is checked against
/// the file size before any data is read, so a damaged header cannot cause a huge allocation.
pub fn read_npy(path: &Path) -> Result<Array> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let available = file.metadata().map_or(u64::MAX, |m| m.len());
    let (header, npy) = read_header(std::io::BufReader::new(file), available, path)?;
    let bytes = read_data(&header, npy, path)?;
    Ok(Array {
        dtype: header.dtype,
        shape: header.shape,
        bytes,
    })
}

/// Writes `array` to `path` as `.npy`, atomically (temporary file, then rename).
pub fn write_npy(path: &Path, array: &Array) -> Result<()> {
    let descr = typestr(array.dtype)
        .with_context(|| format!("cannot write {} arrays to .npy", array.dtype))?;
    let shape: Vec<String> = array.shape.iter().map(usize::to_string).collect();
    let shape = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad with spaces so that magic + version + length + header + newline is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + array.bytes.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    let header_len = u16::try_from(header.len()).context("array rank too large for .npy")?;
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&array.bytes);
    octet_core::fs::write_atomic(path, &out)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_arrays_read_back() {
        let dir = std::env::temp_dir().join(format!("octet-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (dtype, shape, bytes) in [
            (DType::Float32, vec![2, 3], (0..24).collect::<Vec<u8>>()),
            (DType::Int8, vec![5], vec![0, 1, 2, 255, 128]),
            (DType::UInt8, vec![], vec![7]),
            (DType::Int64, vec![1, 1, 1], (0..8).collect()),
        ] {
            let array = Array {
                dtype,
                shape,
                bytes,
            };
            let path = dir.join("a.npy");
            write_npy(&path, &array).unwrap();
            assert_eq!(read_npy(&path).unwrap(), array);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_header_promising_more_than_the_file_holds_is_refused() {
        let dir = std::env::temp_dir().join(format!("octet-npy-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.npy");
        let array = Array {
            dtype: DType::Float32,
            shape: vec![4],
            bytes: vec![0; 16],
        };
        write_npy(&path, &array).unwrap();
        let mut raw = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&raw).replace("(4,)", "(9999999999,)");
        raw = text.into_bytes();
        // Keep the header length consistent is not needed: the parse must fail either way.
        std::fs::write(&path, &raw).unwrap();
        assert!(read_npy(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
