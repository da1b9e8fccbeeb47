//! How a kernel reaches its tensors while it runs: read access to every input and write access
//! to one output at a time, carved out of the shared arena without copying or allocating.

use bytemuck::Pod;
use octet_linalg::Threads;

use crate::RuntimeError;

/// Where a tensor's bytes live while the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// In the arena, at this byte range.
    Arena { offset: usize, len: usize },
    /// In the constant store, at this byte range.
    Constant { offset: usize, len: usize },
    /// An omitted optional input.
    Absent,
}

/// The tensors of the operator being run.
///
/// The planner never places an operator's output over one of its live inputs, so for any one
/// output the arena splits into three disjoint parts: before it, the output itself, and after it.
/// Inputs are read from the outer parts and the constant store.
pub struct OpIo<'a> {
    pub(crate) arena: &'a mut [u8],
    pub(crate) constants: &'a [u8],
    pub(crate) inputs: &'a [Slot],
    pub(crate) outputs: &'a [Slot],
    /// Scratch memory shared by all operators (sized at prepare time from
    /// [`Kernel::scratch_bytes`](crate::Kernel::scratch_bytes)), 8-byte aligned.
    pub(crate) scratch: &'a mut [u64],
    pub(crate) threads: &'a Threads,
}

/// Everything a kernel works with while it runs: its inputs, one output, the shared scratch
/// memory and the threads.
pub struct OpParts<'a, T> {
    /// Read access to the inputs.
    pub inputs: Inputs<'a>,
    /// The output being written.
    pub output: &'a mut [T],
    /// Scratch memory, at least the kernel's `scratch_bytes`, 8-byte aligned.
    pub scratch: &'a mut [u64],
    /// The interpreter's threads.
    pub threads: &'a Threads,
}

/// Read access to an operator's inputs while one of its outputs is being written.
pub struct Inputs<'a> {
    before: &'a [u8],
    after: &'a [u8],
    after_start: usize,
    constants: &'a [u8],
    slots: &'a [Slot],
}

fn typed<T: Pod>(bytes: &[u8]) -> Result<&[T], RuntimeError> {
    bytemuck::try_cast_slice(bytes).map_err(|e| {
        RuntimeError::eval(format!(
            "tensor bytes cannot be viewed as {}: {e}",
            std::any::type_name::<T>()
        ))
    })
}

/// Views an output's bytes as elements of `T`.
pub fn typed_mut<T: Pod>(bytes: &mut [u8]) -> Result<&mut [T], RuntimeError> {
    bytemuck::try_cast_slice_mut(bytes).map_err(|e| {
        RuntimeError::eval(format!(
            "tensor bytes cannot be viewed as {}: {e}",
            std::any::type_name::<T>()
        ))
    })
}

impl<'a> OpIo<'a> {
    /// Number of inputs (including omitted optional ones).
    pub fn num_inputs(&self) -> usize {
        self.inputs.len()
    }

    /// Number of outputs.
    pub fn num_outputs(&self) -> usize {
        self.outputs.len()
    }

    /// Read access to all inputs and write access to output `k`.
    pub fn split(&mut self, k: usize) -> Result<(Inputs<'_>, &mut [u8]), RuntimeError> {
        let (before, output, after, end) = Self::carve(self.arena, self.outputs, k)?;
        Ok((
            Inputs {
                before,
                after,
                after_start: end,
                constants: self.constants,
                slots: self.inputs,
            },
            output,
        ))
    }

    /// Inputs, output `k` viewed as `T`, scratch memory and threads, all at once.
    pub fn parts<T: Pod>(&mut self, k: usize) -> Result<OpParts<'_, T>, RuntimeError> {
        let threads = self.threads;
        let (before, output, after, end) = Self::carve(self.arena, self.outputs, k)?;
        Ok(OpParts {
            inputs: Inputs {
                before,
                after,
                after_start: end,
                constants: self.constants,
                slots: self.inputs,
            },
            output: typed_mut(output)?,
            scratch: self.scratch,
            threads,
        })
    }

    /// The interpreter's threads.
    pub fn threads(&self) -> &Threads {
        self.threads
    }

    /// [`split`](Self::split) for output 0, with the output viewed as `T`: the common case.
    pub fn single<T: Pod>(&mut self) -> Result<(Inputs<'_>, &mut [T]), RuntimeError> {
        let (inputs, out) = self.split(0)?;
        Ok((inputs, typed_mut(out)?))
    }
}

impl<'a> OpIo<'a> {
    /// Splits the arena around output `k`: (before, output, after, end offset of the output).
    #[allow(clippy::type_complexity)]
    fn carve<'b>(
        arena: &'b mut [u8],
        outputs: &[Slot],
        k: usize,
    ) -> Result<(&'b [u8], &'b mut [u8], &'b [u8], usize), RuntimeError> {
        let Some(&Slot::Arena { offset, len }) = outputs.get(k) else {
            return Err(RuntimeError::eval(format!("output {k} has no arena slot")));
        };
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= arena.len())
            .ok_or_else(|| RuntimeError::eval(format!("output {k} lies outside the arena")))?;
        let (before, rest) = arena.split_at_mut(offset);
        let (output, after) = rest.split_at_mut(len);
        Ok((before, output, after, end))
    }
}

impl Inputs<'_> {
    /// Number of inputs (including omitted optional ones).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when the operator has no inputs.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// True when input `i` is present (not an omitted optional input).
    pub fn is_present(&self, i: usize) -> bool {
        matches!(
            self.slots.get(i),
            Some(Slot::Arena { .. } | Slot::Constant { .. })
        )
    }

    /// The raw bytes of input `i`.
    pub fn bytes(&self, i: usize) -> Result<&[u8], RuntimeError> {
        let missing = || RuntimeError::eval(format!("input {i} is not available"));
        match self.slots.get(i) {
            Some(&Slot::Constant { offset, len }) => {
                self.constants.get(offset..offset + len).ok_or_else(missing)
            }
            Some(&Slot::Arena { offset, len }) => {
                if offset + len <= self.before.len() {
                    self.before.get(offset..offset + len).ok_or_else(missing)
                } else if offset >= self.after_start {
                    let start = offset - self.after_start;
                    self.after.get(start..start + len).ok_or_else(missing)
                } else {
                    Err(RuntimeError::eval(format!(
                        "input {i} overlaps the output being written"
                    )))
                }
            }
            _ => Err(missing()),
        }
    }

    /// Input `i` viewed as elements of `T` (`f32`, `i8`, `u8`, `i16`, `i32`, `i64`, ...).
    pub fn get<T: Pod>(&self, i: usize) -> Result<&[T], RuntimeError> {
        typed(self.bytes(i)?)
    }
}
