//! DENSIFY: a sparse constant to its dense form.

use octet_core::{DType, Sparsity};

use super::ConstantOutput;
use crate::{Kernel, OpContext, RuntimeError};

/// DENSIFY: expands a sparse constant (float32, float16 or int8, TFLite's TACO-like format with
/// optional block sparsity) once, when the kernel is built; running it copies the dense values.
pub fn densify(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(0)?;
    let output = ctx.output(0)?;
    if input.dtype != output.dtype || input.shape != output.shape {
        return Err(ctx.invalid(format!(
            "input {} {:?} and output {} {:?} differ",
            input.dtype, input.shape, output.dtype, output.shape
        )));
    }
    let element = match input.dtype {
        DType::Float32 => 4,
        DType::Float16 => 2,
        DType::Int8 => 1,
        _ => return Err(ctx.unsupported_types()),
    };
    let tensor = ctx
        .operator
        .inputs
        .first()
        .copied()
        .flatten()
        .and_then(|id| ctx.subgraph.tensor(id))
        .ok_or_else(|| ctx.invalid("input 0 is missing"))?;
    let Some(sparsity) = tensor.sparsity.as_ref() else {
        return Err(ctx.invalid("the input is not a sparse tensor"));
    };
    let Some(values) = ctx.model.tensor_bytes(tensor) else {
        return Err(ctx.invalid("the sparse input is not a constant"));
    };
    let bytes = densify_bytes(sparsity, &input.shape, values, element)
        .map_err(|e| ctx.invalid(format!("sparse tensor '{}': {e}", input.name)))?;
    Ok(Box::new(ConstantOutput { bytes }))
}

/// The dense row-major bytes of a sparse tensor of `shape` whose stored values (`element` bytes
/// each, in traversal order) are `values`: TFLite's `FormatConverter::SparseToDense`.
fn densify_bytes(
    sparsity: &Sparsity,
    shape: &[usize],
    values: &[u8],
    element: usize,
) -> Result<Vec<u8>, String> {
    let rank = shape.len();
    let levels = sparsity.traversal_order.len();
    if sparsity.dim_metadata.len() != levels || levels < rank {
        return Err(format!(
            "{} dimension metadata entries for a traversal order of {levels} and rank {rank}",
            sparsity.dim_metadata.len()
        ));
    }
    let order = sparsity
        .traversal_order
        .iter()
        .map(|&d| usize::try_from(d).ok().filter(|&d| d < levels))
        .collect::<Option<Vec<_>>>()
        .ok_or("traversal order out of range")?;
    let block_map = sparsity
        .block_map
        .iter()
        .map(|&d| usize::try_from(d).ok().filter(|&d| d < rank))
        .collect::<Option<Vec<_>>>()
        .ok_or("block map out of range")?;
    if sparsity.dim_metadata[rank..].iter().any(|m| m.sparse) {
        return Err("block dimensions must be dense (TFLite supports no other)".into());
    }
    if levels != rank + block_map.len() {
        return Err(format!(
            "traversal order of {levels} levels for rank {rank} and {} block dimensions",
            block_map.len()
        ));
    }
    let dims: Vec<Level> = sparsity
        .dim_metadata
        .iter()
        .map(|m| {
            if m.sparse {
                Level::Sparse {
                    segments: m.array_segments.to_i64(),
                    indices: m.array_indices.to_i64(),
                }
            } else {
                Level::Dense(i64::from(m.dense_size))
            }
        })
        .collect();
    // Block sizes as TFLite's `InitSparseToDenseConverter` reads them: the dense size at the
    // level whose index is the block dimension's traversal entry.
    let dense_size = |level: usize| match sparsity.dim_metadata.get(level) {
        Some(m) => i64::from(m.dense_size),
        None => 0,
    };
    // Like TFLite, this walks the dimensions in order, so only a sorted block map gets all its
    // sizes (the others stay 0).
    let mut block_sizes = vec![0i64; block_map.len()];
    let mut b = 0;
    for d in 0..rank {
        if block_map.get(b) == Some(&d) {
            block_sizes[b] = dense_size(order[rank + b]);
            b += 1;
        }
    }

    let dense_len: usize = shape.iter().product();
    let mut out = vec![0u8; dense_len * element];
    let mut walk = Walk {
        order: &order,
        block_map: &block_map,
        block_sizes: &block_sizes,
        shape,
        dims: &dims,
        values,
        element,
        next_value: 0,
        indices: vec![0; levels],
        out: &mut out,
    };
    walk.populate(0, 0)?;
    Ok(out)
}

/// One traversal level of a sparse tensor.
enum Level {
    Dense(i64),
    Sparse {
        segments: Vec<i64>,
        indices: Vec<i64>,
    },
}

/// State of TFLite's recursive `Populate`.
struct Walk<'a> {
    order: &'a [usize],
    block_map: &'a [usize],
    block_sizes: &'a [i64],
    shape: &'a [usize],
    dims: &'a [Level],
    values: &'a [u8],
    element: usize,
    next_value: usize,
    indices: Vec<i64>,
    out: &'a mut [u8],
}

impl Walk<'_> {
    fn populate(&mut self, level: usize, prev: i64) -> Result<(), String> {
        let Some(dim) = self.dims.get(level) else {
            return self.store();
        };
        match dim {
            Level::Dense(size) => {
                for i in 0..*size {
                    self.indices[level] = i;
                    self.populate(level + 1, prev * size + i)?;
                }
            }
            Level::Sparse { segments, indices } => {
                let at = |k: i64| {
                    usize::try_from(k)
                        .ok()
                        .and_then(|k| segments.get(k).copied())
                };
                if let (Some(from), Some(to)) = (at(prev), at(prev + 1)) {
                    for i in from..to {
                        let Some(&index) = usize::try_from(i).ok().and_then(|i| indices.get(i))
                        else {
                            continue;
                        };
                        self.indices[level] = index;
                        self.populate(level + 1, i)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the next stored value at the dense position of the current indices.
    fn store(&mut self) -> Result<(), String> {
        let rank = self.shape.len();
        let mut dense = vec![0i64; rank];
        for (level, &index) in self.indices.iter().enumerate().take(rank) {
            *dense
                .get_mut(self.order[level])
                .ok_or("a block dimension is traversed before a dense one")? = index;
        }
        for level in rank..self.indices.len() {
            let block = self.order[level]
                .checked_sub(rank)
                .filter(|&b| b < self.block_map.len())
                .ok_or("block level out of range")?;
            let d = self.block_map[block];
            dense[d] = dense[d] * self.block_sizes[block] + self.indices[level];
        }
        let mut flat = 0usize;
        for (&index, &size) in dense.iter().zip(self.shape) {
            let index = usize::try_from(index)
                .ok()
                .filter(|&i| i < size)
                .ok_or_else(|| format!("index {index} outside dimension of size {size}"))?;
            flat = flat * size + index;
        }
        let src = self.next_value * self.element;
        let value = self
            .values
            .get(src..src + self.element)
            .ok_or("more positions than stored values")?;
        self.out[flat * self.element..(flat + 1) * self.element].copy_from_slice(value);
        self.next_value += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::f32s;
    use octet_core::{DimensionMetadata, Op, SparseIndices};

    fn csr(dense_size: i32) -> DimensionMetadata {
        DimensionMetadata {
            sparse: false,
            dense_size,
            array_segments: SparseIndices::Absent,
            array_indices: SparseIndices::Absent,
        }
    }

    #[test]
    fn densify_a_csr_matrix() {
        // [[0 5 0] [7 0 8]]: row 0 holds column 1, row 1 columns 0 and 2.
        let sparsity = Sparsity {
            traversal_order: vec![0, 1],
            block_map: vec![],
            dim_metadata: vec![
                csr(2),
                DimensionMetadata {
                    sparse: true,
                    dense_size: 0,
                    array_segments: SparseIndices::I32(vec![0, 1, 3]),
                    array_indices: SparseIndices::U8(vec![1, 0, 2]),
                },
            ],
        };
        let dense = densify_bytes(&sparsity, &[2, 3], &[5, 7, 8], 1).unwrap();
        assert_eq!(dense, vec![0, 5, 0, 7, 0, 8]);
        // Fewer stored values than positions is an error, not a panic.
        assert!(densify_bytes(&sparsity, &[2, 3], &[5, 7], 1).is_err());
    }

    #[test]
    fn densify_blocks() {
        // A [2, 4] matrix in 1x2 blocks: block rows 0..2, block columns 0..2 (sparse), then
        // the dense 1x2 block. Row 0 keeps block column 1, row 1 block column 0:
        // [[0 0 1 2] [3 4 0 0]].
        let sparsity = Sparsity {
            traversal_order: vec![0, 1, 2, 3],
            block_map: vec![0, 1],
            dim_metadata: vec![
                csr(2),
                DimensionMetadata {
                    sparse: true,
                    dense_size: 0,
                    array_segments: SparseIndices::I32(vec![0, 1, 2]),
                    array_indices: SparseIndices::I32(vec![1, 0]),
                },
                csr(1),
                csr(2),
            ],
        };
        let values = f32s(&[1.0, 2.0, 3.0, 4.0]);
        let dense = densify_bytes(&sparsity, &[2, 4], &values, 4).unwrap();
        assert_eq!(dense, f32s(&[0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 0.0]));
    }

    #[test]
    fn densify_the_sparse_fixture_model() {
        // models/sparse_fc.tflite: a [32, 64] float kernel with 410 stored values feeding
        // DENSIFY. The dense tensor must hold exactly those values, each once.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/sparse_fc.tflite");
        let model = octet_tflite::read_file(std::path::Path::new(path)).unwrap();
        let sg = model.main_subgraph().unwrap();
        let op = sg
            .operators
            .iter()
            .find(|o| matches!(o.op, Op::Densify))
            .unwrap();
        let tensor = sg.tensor(op.inputs[0].unwrap()).unwrap();
        let values = model.tensor_bytes(tensor).unwrap();
        let dense = densify_bytes(tensor.sparsity.as_ref().unwrap(), &[32, 64], values, 4).unwrap();
        let mut stored: Vec<u32> = bytemuck::cast_slice::<u8, u32>(values).to_vec();
        let mut nonzero: Vec<u32> = bytemuck::cast_slice::<u8, u32>(&dense)
            .iter()
            .copied()
            .filter(|&b| b != 0)
            .collect();
        stored.retain(|&b| b != 0);
        stored.sort_unstable();
        nonzero.sort_unstable();
        assert_eq!(stored.len(), 410);
        assert_eq!(nonzero, stored);
    }
}
