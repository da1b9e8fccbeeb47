use octet_core::{CoreError, DType, QuantParams, Tensor};

/// What the runtime knows about a tensor: dtype, static shape and quantization.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Name (for messages and observers).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Static shape, every dimension known.
    pub shape: Vec<usize>,
    /// Quantization parameters, if the tensor has an affine mapping.
    pub quant: Option<QuantParams>,
}

impl TensorInfo {
    /// The runtime view of a model tensor; an error if its shape has unknown dimensions.
    pub fn from_tensor(tensor: &Tensor) -> Result<Self, CoreError> {
        let shape = tensor
            .shape
            .dims()
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| CoreError::IndefiniteShape(tensor.shape.to_string()))?;
        tensor.shape.num_elements()?;
        Ok(TensorInfo {
            name: tensor.name.clone(),
            dtype: tensor.dtype,
            shape,
            quant: tensor.quant.clone().filter(QuantParams::is_affine),
        })
    }

    /// Number of elements.
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of a dense buffer holding this tensor (0 for dtypes without a fixed size).
    pub fn byte_len(&self) -> usize {
        self.dtype.dense_byte_len(self.num_elements()).unwrap_or(0)
    }

    /// Rank.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Per-tensor `(scale, zero_point)`, if the tensor is quantized per tensor.
    pub fn scale_zero_point(&self) -> Option<(f32, i32)> {
        let (scale, zero_point) = self.quant.as_ref()?.single()?;
        Some((scale, i32::try_from(zero_point).ok()?))
    }
}
