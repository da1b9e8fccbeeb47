//! Preparing a model into an execution plan, and running it.

use std::time::Instant;

use octet_core::{Model, Op, TensorId};
use octet_linalg::{Isa, Threads};

use crate::io::Slot;
use crate::plan::{ARENA_ALIGNMENT, TensorLifetime, plan_arena};
use crate::{Kernel, OpContext, OpIo, RuntimeError, TensorInfo, kernels, shape_inference};

/// How an [`Interpreter`] runs: threads and instruction set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterpreterOptions {
    /// Threads the kernels split their work over (1: everything on the caller's thread).
    pub threads: usize,
    /// The instruction set whose micro-kernels to use; `None` picks the best this CPU has.
    /// Asking for one the CPU lacks falls back to the best it has below it.
    pub isa: Option<Isa>,
}

impl Default for InterpreterOptions {
    fn default() -> Self {
        InterpreterOptions {
            threads: 1,
            isa: None,
        }
    }
}

/// One operator as the interpreter runs it: for profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorInfo {
    /// Index of the operator in the subgraph.
    pub index: usize,
    /// The op's TFLite name.
    pub op: String,
    /// Shape of its first output.
    pub output_shape: Vec<usize>,
    /// Multiply-accumulates one run performs (0 for ops that do not multiply).
    pub macs: u64,
}

/// A tensor's value as the observer sees it, right after it was computed.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// The tensor in the main subgraph.
    pub tensor: TensorId,
    /// Its dtype, shape and quantization.
    pub info: &'a TensorInfo,
    /// Its bytes (little-endian, dense).
    pub bytes: &'a [u8],
}

/// One operator ready to run.
struct Step {
    kernel: Box<dyn Kernel>,
    index: usize,
    /// An operator fusion absorbed: run only to show its outputs to an observer.
    observe_only: bool,
    /// What the step reads and writes while observed, when it differs: a convolution without
    /// the element-wise operator fused into it (which then runs on its own).
    observed_io: Option<ObservedIo>,
    name: String,
    inputs: Vec<Slot>,
    outputs: Vec<Slot>,
    output_ids: Vec<TensorId>,
}

/// The inputs and outputs of a step while observed.
struct ObservedIo {
    inputs: Vec<Slot>,
    outputs: Vec<Slot>,
    output_ids: Vec<TensorId>,
}

/// A fused step's name in profiles: `PAD+CONV_2D`, `CONV_2D+ADD+PRELU`.
fn fused_name(pad: bool, op: String, outputs: impl Iterator<Item = String>) -> String {
    let mut name = if pad { format!("PAD+{op}") } else { op };
    for output in outputs {
        name.push('+');
        name.push_str(&output);
    }
    name
}

/// A prepared model: kernels chosen, weights pre-processed, memory planned.
pub struct Interpreter {
    tensors: Vec<TensorInfo>,
    slots: Vec<Slot>,
    steps: Vec<Step>,
    operators: Vec<OperatorInfo>,
    /// Whether inferences run on the thread pool (see [`POOL_MIN_MACS`]).
    pooled: bool,
    arena: Vec<u64>,
    /// Words of arena [`Interpreter::invoke_observed`] needs: the planned arena and the memory
    /// of absorbed operators' outputs past it (allocated on the first observed run).
    observed_words: usize,
    constants: Vec<u64>,
    scratch: Vec<u64>,
    threads: Threads,
    isa: Isa,
    inputs: Vec<TensorId>,
    outputs: Vec<TensorId>,
}

impl std::fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter")
            .field("operators", &self.steps.len())
            .field("arena_bytes", &(self.arena.len() * 8))
            .field("constant_bytes", &(self.constants.len() * 8))
            .field("scratch_bytes", &(self.scratch.len() * 8))
            .field("threads", &self.threads.count())
            .field("isa", &self.isa)
            .finish()
    }
}

fn words_for(bytes: usize) -> usize {
    bytes.div_ceil(ARENA_ALIGNMENT) * (ARENA_ALIGNMENT / 8)
}

impl Interpreter {
    /// Prepares the model's main subgraph: checks every operator, builds its kernel and plans
    /// the arena. An op or dtype flavour octet cannot run is reported here, by name.
    pub fn new(model: &Model) -> Result<Self, RuntimeError> {
        Interpreter::with_options(model, InterpreterOptions::default())
    }

    /// [`Interpreter::new`] with threads and an instruction set of the caller's choosing.
    pub fn with_options(model: &Model, options: InterpreterOptions) -> Result<Self, RuntimeError> {
        let isa = match options.isa {
            Some(wanted) => Isa::supported()
                .into_iter()
                .filter(|&isa| isa <= wanted)
                .max()
                .unwrap_or(Isa::Generic),
            None => Isa::detect(),
        };
        let threads =
            Threads::new(options.threads).map_err(|e| RuntimeError::Model(e.to_string()))?;
        let sg = model
            .main_subgraph()
            .ok_or_else(|| RuntimeError::Model("the model has no subgraph".into()))?;
        let tensors = sg
            .tensors
            .iter()
            .map(|t| {
                TensorInfo::from_tensor(t)
                    .map_err(|e| RuntimeError::Model(format!("tensor '{}': {e}", t.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut tensors = tensors;
        for (index, operator) in sg.operators.iter().enumerate() {
            for &out in &operator.outputs {
                let stored = &sg.tensors[out.index()];
                if stored.has_rank || !stored.shape.dims().is_empty() {
                    continue;
                }
                let ctx = OpContext {
                    model,
                    operator,
                    index,
                    tensors: &tensors,
                    subgraph: sg,
                    isa,
                    folded: None,
                    padding: None,
                    fused_output: None,
                    intermediates: &[],
                    threads: threads.count(),
                };
                if let Some(shape) = shape_inference::inferred_output_shape(&ctx) {
                    tensors[out.index()].shape = shape;
                }
            }
        }

        // Constants go to their own store, each aligned like arena tensors.
        let mut slots = vec![Slot::Absent; sg.tensors.len()];
        let mut constant_bytes: Vec<u8> = Vec::new();
        for (i, tensor) in sg.tensors.iter().enumerate() {
            if tensor.is_variable {
                return Err(RuntimeError::Model(format!(
                    "tensor '{}' is a variable; stateful models are not supported yet",
                    tensor.name
                )));
            }
            let Some(bytes) = model.tensor_bytes(tensor) else {
                continue;
            };
            if tensor.sparsity.is_none() && bytes.len() != tensors[i].byte_len() {
                return Err(RuntimeError::Model(format!(
                    "constant tensor '{}' holds {} bytes, but {} {:?} needs {}",
                    tensor.name,
                    bytes.len(),
                    tensor.dtype,
                    tensors[i].shape,
                    tensors[i].byte_len()
                )));
            }
            let offset = constant_bytes.len();
            constant_bytes.extend_from_slice(bytes);
            constant_bytes.resize(words_for(constant_bytes.len()) * 8, 0);
            slots[i] = Slot::Constant {
                offset,
                len: bytes.len(),
            };
        }
        let mut constants = vec![0u64; constant_bytes.len() / 8];
        bytemuck::cast_slice_mut(&mut constants).copy_from_slice(&constant_bytes);

        // Operators that only turn constants into constants (fp16 weights' DEQUANTIZE, sparse
        // weights' DENSIFY) run once, here, and their outputs join the constant store.
        let mut folded = vec![false; sg.operators.len()];
        for (index, operator) in sg.operators.iter().enumerate() {
            let foldable = matches!(operator.op, Op::Dequantize | Op::Densify)
                && operator.inputs.iter().flatten().next().is_some()
                && operator
                    .inputs
                    .iter()
                    .flatten()
                    .all(|id| matches!(slots.get(id.index()), Some(Slot::Constant { .. })))
                && operator.outputs.iter().all(|id| {
                    !sg.outputs.contains(id) && matches!(slots.get(id.index()), Some(Slot::Absent))
                });
            if !foldable {
                continue;
            }
            let ctx = OpContext {
                model,
                operator,
                index,
                tensors: &tensors,
                subgraph: sg,
                isa,
                folded: None,
                padding: None,
                fused_output: None,
                intermediates: &[],
                threads: threads.count(),
            };
            let mut kernel = kernels::build(&ctx)?;
            let mut out_slots = Vec::with_capacity(operator.outputs.len());
            let mut arena_len = 0;
            for id in &operator.outputs {
                let len = tensors[id.index()].byte_len();
                out_slots.push(Slot::Arena {
                    offset: arena_len,
                    len,
                });
                arena_len += words_for(len) * 8;
            }
            let mut arena = vec![0u64; arena_len / 8];
            let mut scratch = vec![0u64; kernel.scratch_bytes().div_ceil(8)];
            let in_slots: Vec<Slot> = operator
                .inputs
                .iter()
                .map(|i| i.map_or(Slot::Absent, |id| slots[id.index()]))
                .collect();
            let single = Threads::single();
            let mut io = OpIo {
                arena: bytemuck::cast_slice_mut(&mut arena),
                constants: bytemuck::cast_slice(&constants),
                inputs: &in_slots,
                outputs: &out_slots,
                scratch: &mut scratch,
                threads: &single,
            };
            kernel.eval(&mut io).map_err(|e| match e {
                RuntimeError::Eval { detail, .. } => RuntimeError::Eval {
                    index,
                    op: ctx.op_name(),
                    detail,
                },
                other => other,
            })?;
            for (id, slot) in operator.outputs.iter().zip(&out_slots) {
                if let Slot::Arena { offset, len } = *slot {
                    let start = constants.len() * 8;
                    constants
                        .extend_from_slice(&arena[offset / 8..(offset + words_for(len) * 8) / 8]);
                    slots[id.index()] = Slot::Constant { offset: start, len };
                }
            }
            folded[index] = true;
        }

        // Operators another one does the work of (a PAD a convolution pads itself for).
        let fusion = {
            let store: &[u8] = bytemuck::cast_slice(&constants);
            let slots = &slots;
            crate::fusion::plan(sg, &tensors, &folded, move |id| {
                match slots.get(id.index()) {
                    Some(&Slot::Constant { offset, len }) => store.get(offset..offset + len),
                    _ => None,
                }
            })
        };

        // Lifetimes of everything that is computed: graph inputs from step 0, op outputs from
        // the op that writes them, until their last reader (graph outputs: until the end).
        // Operators absorbed by fusion write nothing `invoke` needs.
        let end = sg.operators.len();
        let mut first = vec![usize::MAX; sg.tensors.len()];
        let mut last = vec![0usize; sg.tensors.len()];
        let computed =
            |id: TensorId, slots: &[Slot]| matches!(slots.get(id.index()), Some(Slot::Absent));
        for &id in &sg.inputs {
            if computed(id, &slots) {
                first[id.index()] = 0;
            }
        }
        // Tensors only observed runs compute: outputs of absorbed operators, and what a
        // convolution writes before the element-wise operator fused into it.
        let mut observed_only = vec![false; sg.tensors.len()];
        for (step, op) in sg.operators.iter().enumerate() {
            if !folded[step] {
                for id in &op.outputs {
                    observed_only[id.index()] = computed(*id, &slots);
                }
            }
        }
        for (step, op) in sg.operators.iter().enumerate() {
            if !folded[step] && !fusion.is_absorbed(step) {
                for id in &fusion.operator(step, op).outputs {
                    observed_only[id.index()] = false;
                }
            }
        }
        for (step, op) in sg.operators.iter().enumerate() {
            if folded[step] {
                continue;
            }
            if fusion.is_absorbed(step) {
                // Its inputs must survive until it runs while observed.
                for id in op.present_inputs() {
                    if computed(id, &slots) && !observed_only[id.index()] {
                        last[id.index()] = last[id.index()].max(step);
                    }
                }
                continue;
            }
            let op = fusion.operator(step, op);
            for id in op.outputs.iter().copied() {
                if computed(id, &slots) {
                    if first[id.index()] != usize::MAX {
                        return Err(RuntimeError::Model(format!(
                            "tensor '{}' is written twice (operator {step})",
                            sg.tensors[id.index()].name
                        )));
                    }
                    first[id.index()] = step;
                    last[id.index()] = last[id.index()].max(step);
                }
            }
            for id in op.present_inputs() {
                if computed(id, &slots) {
                    if first[id.index()] == usize::MAX {
                        return Err(RuntimeError::Model(format!(
                            "operator {step} reads tensor '{}' before anything writes it",
                            sg.tensors[id.index()].name
                        )));
                    }
                    last[id.index()] = last[id.index()].max(step);
                }
            }
        }
        // Graph inputs stay untouched until the end too, so that invoking again without new
        // inputs computes the same outputs; graph outputs must survive until read.
        for &id in sg.inputs.iter().chain(&sg.outputs) {
            last[id.index()] = end;
        }
        let planned: Vec<usize> = (0..sg.tensors.len())
            .filter(|&t| first[t] != usize::MAX)
            .collect();
        let lifetimes: Vec<TensorLifetime> = planned
            .iter()
            .map(|&t| TensorLifetime {
                size: tensors[t].byte_len(),
                first: first[t],
                last: last[t].max(first[t]),
            })
            .collect();
        let plan = plan_arena(&lifetimes);
        for (&t, &offset) in planned.iter().zip(&plan.offsets) {
            slots[t] = Slot::Arena {
                offset,
                len: tensors[t].byte_len(),
            };
        }
        // Tensors only observed runs compute get memory past the planned arena, planned by
        // their lifetimes in the model's own order of operators.
        let mut side_first = vec![usize::MAX; sg.tensors.len()];
        let mut side_last = vec![0usize; sg.tensors.len()];
        for (step, op) in sg.operators.iter().enumerate() {
            for id in &op.outputs {
                if observed_only[id.index()] {
                    side_first[id.index()] = side_first[id.index()].min(step);
                    side_last[id.index()] = side_last[id.index()].max(step);
                }
            }
            for id in op.present_inputs() {
                if observed_only[id.index()] {
                    side_last[id.index()] = side_last[id.index()].max(step);
                }
            }
        }
        let side: Vec<usize> = (0..sg.tensors.len())
            .filter(|&t| observed_only[t] && side_first[t] != usize::MAX)
            .collect();
        let side_plan = plan_arena(
            &side
                .iter()
                .map(|&t| TensorLifetime {
                    size: tensors[t].byte_len(),
                    first: side_first[t],
                    last: side_last[t],
                })
                .collect::<Vec<_>>(),
        );
        for (&t, &offset) in side.iter().zip(&side_plan.offsets) {
            slots[t] = Slot::Arena {
                offset: plan.size + offset,
                len: tensors[t].byte_len(),
            };
        }
        let observed_bytes = plan.size + side_plan.size;
        for &id in sg.inputs.iter().chain(&sg.outputs) {
            if matches!(slots[id.index()], Slot::Absent) {
                return Err(RuntimeError::Model(format!(
                    "graph input/output '{}' is never computed",
                    sg.tensors[id.index()].name
                )));
            }
        }

        let mut steps = Vec::with_capacity(sg.operators.len());
        let mut operators = Vec::with_capacity(sg.operators.len());
        let mut scratch_bytes = 0;
        for (index, original) in sg.operators.iter().enumerate() {
            if folded[index] {
                continue;
            }
            let operator = fusion.operator(index, original);
            let padding = fusion.padding(index);
            let fused_output = fusion.output(index);
            let ctx = OpContext {
                model,
                operator,
                index,
                tensors: &tensors,
                subgraph: sg,
                isa,
                folded: Some((&slots, bytemuck::cast_slice(&constants))),
                padding,
                fused_output,
                intermediates: fusion.intermediates(index),
                threads: threads.count(),
            };
            let kernel = kernels::build(&ctx)?;
            scratch_bytes = scratch_bytes.max(kernel.scratch_bytes());
            let observe_only = fusion.is_absorbed(index);
            if !observe_only {
                operators.push(OperatorInfo {
                    index,
                    op: fused_name(
                        padding.is_some(),
                        ctx.op_name(),
                        fusion
                            .rewrite(index)
                            .map(|r| r.fused.as_slice())
                            .unwrap_or_default()
                            .iter()
                            .filter_map(|&i| sg.operators.get(i))
                            .map(|o| o.op.name().into_owned()),
                    ),
                    output_shape: ctx.output(0).map(|t| t.shape.clone()).unwrap_or_default(),
                    macs: crate::profile::macs(&ctx),
                });
            }
            steps.push(Step {
                kernel,
                index,
                observe_only,
                name: ctx.op_name(),
                inputs: operator
                    .inputs
                    .iter()
                    .map(|i| i.map_or(Slot::Absent, |id| slots[id.index()]))
                    .collect(),
                outputs: operator
                    .outputs
                    .iter()
                    .map(|id| slots[id.index()])
                    .collect(),
                output_ids: operator.outputs.clone(),
                observed_io: fusion
                    .rewrite(index)
                    .filter(|r| r.output.is_some())
                    .map(|r| ObservedIo {
                        inputs: operator
                            .inputs
                            .iter()
                            .take(r.plain_inputs)
                            .map(|i| i.map_or(Slot::Absent, |id| slots[id.index()]))
                            .collect(),
                        outputs: r.plain_outputs.iter().map(|id| slots[id.index()]).collect(),
                        output_ids: r.plain_outputs.clone(),
                    }),
            });
        }

        let pooled =
            threads.count() > 1 && operators.iter().map(|o| o.macs).sum::<u64>() >= POOL_MIN_MACS;
        Ok(Interpreter {
            tensors,
            slots,
            steps,
            operators,
            pooled,
            arena: vec![0u64; plan.size / 8],
            observed_words: observed_bytes / 8,
            constants,
            scratch: vec![0u64; scratch_bytes.div_ceil(8)],
            threads,
            isa,
            inputs: sg.inputs.clone(),
            outputs: sg.outputs.clone(),
        })
    }

    /// Number of graph inputs.
    pub fn num_inputs(&self) -> usize {
        self.inputs.len()
    }

    /// Number of graph outputs.
    pub fn num_outputs(&self) -> usize {
        self.outputs.len()
    }

    /// Bytes of the planned arena (all intermediate tensors, with reuse).
    pub fn arena_bytes(&self) -> usize {
        self.arena.len() * 8
    }

    /// Bytes the interpreter holds: arena, constants (with prepared copies of folded ones) and
    /// scratch. Kernels' packed weights are not counted.
    pub fn memory_bytes(&self) -> usize {
        (self.arena.len() + self.constants.len() + self.scratch.len()) * 8
    }

    /// The instruction set the kernels were built for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Threads the kernels use.
    pub fn threads(&self) -> usize {
        self.threads.count()
    }

    /// The operators [`invoke`](Self::invoke) runs, in order (operators folded into constants
    /// at prepare time are not among them).
    pub fn operators(&self) -> &[OperatorInfo] {
        &self.operators
    }

    /// Dtype, shape and quantization of graph input `i`.
    pub fn input_info(&self, i: usize) -> Result<&TensorInfo, RuntimeError> {
        self.inputs
            .get(i)
            .and_then(|id| self.tensors.get(id.index()))
            .ok_or_else(|| RuntimeError::BadInput(format!("the model has no input {i}")))
    }

    /// Dtype, shape and quantization of graph output `i`.
    pub fn output_info(&self, i: usize) -> Result<&TensorInfo, RuntimeError> {
        self.outputs
            .get(i)
            .and_then(|id| self.tensors.get(id.index()))
            .ok_or_else(|| RuntimeError::BadInput(format!("the model has no output {i}")))
    }

    /// Dtype, shape and quantization of any tensor of the main subgraph.
    pub fn tensor_info(&self, id: TensorId) -> Option<&TensorInfo> {
        self.tensors.get(id.index())
    }

    /// Copies `bytes` (dense, little-endian, the input's own dtype) into graph input `i`.
    pub fn set_input(&mut self, i: usize, bytes: &[u8]) -> Result<(), RuntimeError> {
        let info = self.input_info(i)?;
        let expected = info.byte_len();
        if bytes.len() != expected {
            return Err(RuntimeError::BadInput(format!(
                "input {i} ('{}') is {} {:?}: {expected} bytes expected, {} given",
                info.name,
                info.dtype,
                info.shape,
                bytes.len()
            )));
        }
        let slot = self.slots[self.inputs[i].index()];
        let target = self.bytes_mut(slot)?;
        target.copy_from_slice(bytes);
        Ok(())
    }

    /// The bytes of graph output `i` after the last [`invoke`](Self::invoke).
    pub fn output(&self, i: usize) -> Result<&[u8], RuntimeError> {
        let id = self
            .outputs
            .get(i)
            .ok_or_else(|| RuntimeError::BadInput(format!("the model has no output {i}")))?;
        self.bytes(self.slots[id.index()])
    }

    fn bytes(&self, slot: Slot) -> Result<&[u8], RuntimeError> {
        let bad = || RuntimeError::Model("tensor slot outside its store".into());
        match slot {
            Slot::Arena { offset, len } => bytemuck::cast_slice::<u64, u8>(&self.arena)
                .get(offset..offset + len)
                .ok_or_else(bad),
            Slot::Constant { offset, len } => bytemuck::cast_slice::<u64, u8>(&self.constants)
                .get(offset..offset + len)
                .ok_or_else(bad),
            Slot::Absent => Err(bad()),
        }
    }

    fn bytes_mut(&mut self, slot: Slot) -> Result<&mut [u8], RuntimeError> {
        match slot {
            Slot::Arena { offset, len } => bytemuck::cast_slice_mut::<u64, u8>(&mut self.arena)
                .get_mut(offset..offset + len)
                .ok_or_else(|| RuntimeError::Model("tensor slot outside the arena".into())),
            _ => Err(RuntimeError::Model("a graph input is a constant".into())),
        }
    }

    /// Runs the model on the current inputs. Allocates nothing.
    pub fn invoke(&mut self) -> Result<(), RuntimeError> {
        self.run(None)
    }

    /// Runs every step, on the pool when the model is worth it, timing steps into `seconds`
    /// when given.
    fn run(&mut self, seconds: Option<&mut [f64]>) -> Result<(), RuntimeError> {
        let Interpreter {
            steps,
            arena,
            constants,
            scratch,
            threads,
            pooled,
            ..
        } = self;
        let single = Threads::single();
        let threads = if *pooled { &*threads } else { &single };
        run_steps(steps, arena, constants, scratch, threads, None, seconds)
    }

    /// Runs the model like [`invoke`](Self::invoke) and adds each operator's time in seconds
    /// to `seconds` (parallel to [`operators`](Self::operators); shorter slices get the first
    /// operators only).
    pub fn invoke_profiled(&mut self, seconds: &mut [f64]) -> Result<(), RuntimeError> {
        self.run(Some(seconds))
    }

    /// Runs the model and shows `observer` every graph input and then every operator output as
    /// soon as it is computed (before later operators may reuse its memory). Operators that
    /// fusion absorbed into others run too, so every tensor is shown, in operator order.
    pub fn invoke_observed(
        &mut self,
        observer: &mut dyn FnMut(Observation<'_>),
    ) -> Result<(), RuntimeError> {
        if self.arena.len() < self.observed_words {
            self.arena.resize(self.observed_words, 0);
        }
        for &id in &self.inputs {
            let bytes = self.bytes(self.slots[id.index()])?;
            observer(Observation {
                tensor: id,
                info: &self.tensors[id.index()],
                bytes,
            });
        }
        let Interpreter {
            steps,
            arena,
            constants,
            scratch,
            threads,
            tensors,
            ..
        } = self;
        run_steps(
            steps,
            arena,
            constants,
            scratch,
            threads,
            Some((observer, tensors)),
            None,
        )
    }
}

/// Below about a million multiply-accumulates per inference the hand-over to the thread pool
/// costs more than a second thread saves (and kernels that small run on the caller's thread
/// anyway), so such models do not use the pool.
const POOL_MIN_MACS: u64 = 1_000_000;

/// An observer and the tensor infos it is shown with.
type Observer<'o, 't> = (&'o mut dyn FnMut(Observation<'_>), &'t [TensorInfo]);

/// Runs every step in order, showing outputs to the observer and timing steps when asked.
fn run_steps(
    steps: &mut [Step],
    arena: &mut [u64],
    constants: &[u64],
    scratch: &mut [u64],
    threads: &Threads,
    mut observer: Option<Observer<'_, '_>>,
    mut seconds: Option<&mut [f64]>,
) -> Result<(), RuntimeError> {
    let constants: &[u8] = bytemuck::cast_slice(constants);
    let mut position = 0;
    for step in steps.iter_mut() {
        if step.observe_only && observer.is_none() {
            continue;
        }
        let started = seconds.is_some().then(Instant::now);
        let (inputs, outputs, output_ids) = match (&step.observed_io, observer.is_some()) {
            (Some(io), true) => (&io.inputs, &io.outputs, &io.output_ids),
            _ => (&step.inputs, &step.outputs, &step.output_ids),
        };
        let mut io = OpIo {
            arena: bytemuck::cast_slice_mut(arena),
            constants,
            inputs,
            outputs,
            scratch,
            threads,
        };
        step.kernel.eval(&mut io).map_err(|e| match e {
            RuntimeError::Eval { detail, .. } => RuntimeError::Eval {
                index: step.index,
                op: step.name.clone(),
                detail,
            },
            other => other,
        })?;
        if let (Some(started), Some(seconds)) = (started, seconds.as_deref_mut())
            && let Some(total) = seconds.get_mut(position)
        {
            *total += started.elapsed().as_secs_f64();
        }
        if !step.observe_only {
            position += 1;
        }
        if let Some((observer, tensors)) = observer.as_mut() {
            let arena: &[u8] = bytemuck::cast_slice(arena);
            for (slot, &id) in outputs.iter().zip(output_ids) {
                if let Slot::Arena { offset, len } = *slot
                    && let (Some(bytes), Some(info)) =
                        (arena.get(offset..offset + len), tensors.get(id.index()))
                {
                    observer(Observation {
                        tensor: id,
                        info,
                        bytes,
                    });
                }
            }
        }
    }
    Ok(())
}
