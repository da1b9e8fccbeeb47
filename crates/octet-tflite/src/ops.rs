//! The one place that knows how each op is spelled in a `.tflite` file: its builtin code and its
//! options table, in both directions.

use octet_core::{
    AddOptions, ArgMaxOptions, BatchMatMulOptions, CastOptions, ConcatenationOptions,
    Conv2DOptions, CustomOp, DepthwiseConv2DOptions, FullyConnectedOptions, GatherOptions, Op,
    OpaqueOptions, OtherOp, PackOptions, Pool2DOptions, ResizeOptions, StridedSliceOptions,
    TransposeConvOptions, UnpackOptions,
};

use crate::TfliteError;
use crate::fb::{self, BuiltinOperator as B, BuiltinOptionsT as O};
use crate::types::{
    activation_from_fb as act, activation_to_fb as fb_act, dtype_from_fb, dtype_to_fb,
    mirror_mode_from_fb, mirror_mode_to_fb, padding_from_fb as pad, padding_to_fb as fb_pad,
    weights_format_from_fb, weights_format_to_fb,
};

/// The TFLite name of a builtin operator code (`CONV_2D`), or `BUILTIN_<code>` for codes this
/// schema does not define.
pub fn builtin_op_name(code: i32) -> String {
    B(code)
        .variant_name()
        .map_or_else(|| format!("BUILTIN_{code}"), str::to_owned)
}

/// An operator's identity and options as the file spells them.
pub(crate) struct FileOp {
    pub code: B,
    pub custom_code: Option<String>,
    pub builtin_options: O,
    pub builtin_options_2: fb::BuiltinOptions2T,
    pub custom_options: Option<Vec<u8>>,
    pub custom_options_format: fb::CustomOptionsFormat,
}

/// Converts a file operator (its resolved builtin code and its option fields) into a core op.
/// Ops whose stored options do not fit their typed form become [`Op::Other`], so nothing is lost.
pub(crate) fn op_from_file(file: FileOp) -> Op {
    if file.code == B::CUSTOM {
        return Op::Custom(CustomOp {
            code: file.custom_code.unwrap_or_default(),
            options: file.custom_options.unwrap_or_default(),
            options_format: file.custom_options_format.0,
        });
    }
    let plain = file.custom_options.is_none()
        && file.custom_options_format == fb::CustomOptionsFormat::FLEXBUFFERS
        && matches!(file.builtin_options_2, fb::BuiltinOptions2T::NONE);
    if plain && let Some(op) = typed_op(file.code, &file.builtin_options) {
        return op;
    }
    Op::Other(OtherOp {
        builtin_code: file.code.0,
        name: builtin_op_name(file.code.0),
        options: encode_opaque(&file),
    })
}

/// Converts a core op into the file's spelling.
pub(crate) fn op_to_file(op: &Op) -> Result<FileOp, TfliteError> {
    let file = |code: B, builtin_options: O| FileOp {
        code,
        custom_code: None,
        builtin_options,
        builtin_options_2: fb::BuiltinOptions2T::NONE,
        custom_options: None,
        custom_options_format: fb::CustomOptionsFormat::FLEXBUFFERS,
    };
    Ok(match op {
        Op::Custom(custom) => FileOp {
            code: B::CUSTOM,
            custom_code: Some(custom.code.clone()),
            builtin_options: O::NONE,
            builtin_options_2: fb::BuiltinOptions2T::NONE,
            custom_options: Some(custom.options.clone()),
            custom_options_format: fb::CustomOptionsFormat(custom.options_format),
        },
        Op::Other(other) => decode_opaque(other)?,
        typed => {
            let (code, options) = typed_to_file(typed);
            file(code, options)
        }
    })
}

/// Seals an unmodelled op's option fields into a minimal flatbuffer whose root is an `Operator`.
fn encode_opaque(file: &FileOp) -> OpaqueOptions {
    let carrier = fb::OperatorT {
        builtin_options: file.builtin_options.clone(),
        builtin_options_2: file.builtin_options_2.clone(),
        custom_options: file.custom_options.clone(),
        custom_options_format: file.custom_options_format,
        ..fb::OperatorT::default()
    };
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let root = carrier.pack(&mut fbb);
    fbb.finish_minimal(root);
    OpaqueOptions(fbb.finished_data().to_vec())
}

/// Opens what [`encode_opaque`] sealed.
fn decode_opaque(other: &OtherOp) -> Result<FileOp, TfliteError> {
    let carrier = flatbuffers::root::<fb::Operator>(&other.options.0)
        .map_err(|e| {
            TfliteError::Invalid(format!(
                "sealed options of {} are damaged: {e}",
                builtin_op_name(other.builtin_code)
            ))
        })?
        .unpack();
    Ok(FileOp {
        code: B(other.builtin_code),
        custom_code: None,
        builtin_options: carrier.builtin_options,
        builtin_options_2: carrier.builtin_options_2,
        custom_options: carrier.custom_options,
        custom_options_format: carrier.custom_options_format,
    })
}

/// The typed form of a builtin op, if octet models it and its options fit.
fn typed_op(code: B, options: &O) -> Option<Op> {
    // Ops whose schema options table has no fields: accept it present or absent.
    let fieldless = |empty: bool, op: Op| empty.then_some(op);
    let none = matches!(options, O::NONE);
    Some(match (code, options) {
        (B::ADD, O::AddOptions(o)) => Op::Add(AddOptions {
            activation: act(o.fused_activation_function)?,
            pot_scale_int16: o.pot_scale_int16,
        }),
        (B::SUB, O::SubOptions(o)) => Op::Sub(AddOptions {
            activation: act(o.fused_activation_function)?,
            pot_scale_int16: o.pot_scale_int16,
        }),
        (B::MUL, O::MulOptions(o)) => Op::Mul {
            activation: act(o.fused_activation_function)?,
        },
        (B::CONV_2D, O::Conv2DOptions(o)) => Op::Conv2D(Conv2DOptions {
            padding: pad(o.padding)?,
            stride_w: o.stride_w,
            stride_h: o.stride_h,
            activation: act(o.fused_activation_function)?,
            dilation_w: o.dilation_w_factor,
            dilation_h: o.dilation_h_factor,
            quantized_bias_type: dtype_from_fb(o.quantized_bias_type)?,
        }),
        (B::DEPTHWISE_CONV_2D, O::DepthwiseConv2DOptions(o)) => {
            Op::DepthwiseConv2D(DepthwiseConv2DOptions {
                padding: pad(o.padding)?,
                stride_w: o.stride_w,
                stride_h: o.stride_h,
                depth_multiplier: o.depth_multiplier,
                activation: act(o.fused_activation_function)?,
                dilation_w: o.dilation_w_factor,
                dilation_h: o.dilation_h_factor,
            })
        }
        (B::FULLY_CONNECTED, O::FullyConnectedOptions(o)) => {
            Op::FullyConnected(FullyConnectedOptions {
                activation: act(o.fused_activation_function)?,
                weights_format: weights_format_from_fb(o.weights_format)?,
                keep_num_dims: o.keep_num_dims,
                asymmetric_quantize_inputs: o.asymmetric_quantize_inputs,
                quantized_bias_type: dtype_from_fb(o.quantized_bias_type)?,
            })
        }
        (B::TRANSPOSE_CONV, O::TransposeConvOptions(o)) => {
            Op::TransposeConv(TransposeConvOptions {
                padding: pad(o.padding)?,
                stride_w: o.stride_w,
                stride_h: o.stride_h,
                activation: act(o.fused_activation_function)?,
                quantized_bias_type: dtype_from_fb(o.quantized_bias_type)?,
            })
        }
        (B::BATCH_MATMUL, O::BatchMatMulOptions(o)) => Op::BatchMatMul(BatchMatMulOptions {
            adj_x: o.adj_x,
            adj_y: o.adj_y,
            asymmetric_quantize_inputs: o.asymmetric_quantize_inputs,
        }),
        (B::AVERAGE_POOL_2D | B::MAX_POOL_2D, O::Pool2DOptions(o)) => {
            let options = Pool2DOptions {
                padding: pad(o.padding)?,
                stride_w: o.stride_w,
                stride_h: o.stride_h,
                filter_width: o.filter_width,
                filter_height: o.filter_height,
                activation: act(o.fused_activation_function)?,
            };
            if code == B::MAX_POOL_2D {
                Op::MaxPool2D(options)
            } else {
                Op::AveragePool2D(options)
            }
        }
        (B::MEAN, O::ReducerOptions(o)) => Op::Mean {
            keep_dims: o.keep_dims,
        },
        (B::SUM, O::ReducerOptions(o)) => Op::Sum {
            keep_dims: o.keep_dims,
        },
        (B::REDUCE_MAX, O::ReducerOptions(o)) => Op::ReduceMax {
            keep_dims: o.keep_dims,
        },
        (B::SOFTMAX, O::SoftmaxOptions(o)) => Op::Softmax { beta: o.beta },
        (B::LOG_SOFTMAX, _) => fieldless(
            none || matches!(options, O::LogSoftmaxOptions(_)),
            Op::LogSoftmax,
        )?,
        (B::LOGISTIC, O::NONE) => Op::Logistic,
        (B::TANH, O::NONE) => Op::Tanh,
        (B::RELU, O::NONE) => Op::Relu,
        (B::RELU6, O::NONE) => Op::Relu6,
        (B::RELU_N1_TO_1, O::NONE) => Op::ReluN1To1,
        (B::LEAKY_RELU, O::LeakyReluOptions(o)) => Op::LeakyRelu { alpha: o.alpha },
        (B::PRELU, O::NONE) => Op::Prelu,
        (B::HARD_SWISH, _) => fieldless(
            none || matches!(options, O::HardSwishOptions(_)),
            Op::HardSwish,
        )?,
        (B::ELU, O::NONE) => Op::Elu,
        (B::CONCATENATION, O::ConcatenationOptions(o)) => Op::Concatenation(ConcatenationOptions {
            axis: o.axis,
            activation: act(o.fused_activation_function)?,
        }),
        (B::PAD, _) => fieldless(none || matches!(options, O::PadOptions(_)), Op::Pad)?,
        (B::PADV2, _) => fieldless(none || matches!(options, O::PadV2Options(_)), Op::PadV2)?,
        (B::MIRROR_PAD, O::MirrorPadOptions(o)) => Op::MirrorPad {
            mode: mirror_mode_from_fb(o.mode)?,
        },
        (B::RESHAPE, O::NONE) => Op::Reshape { new_shape: None },
        (B::RESHAPE, O::ReshapeOptions(o)) => Op::Reshape {
            new_shape: Some(o.new_shape.clone()?),
        },
        (B::SQUEEZE, O::SqueezeOptions(o)) => Op::Squeeze {
            squeeze_dims: o.squeeze_dims.clone().unwrap_or_default(),
        },
        (B::EXPAND_DIMS, _) => fieldless(
            none || matches!(options, O::ExpandDimsOptions(_)),
            Op::ExpandDims,
        )?,
        (B::TRANSPOSE, _) => fieldless(
            none || matches!(options, O::TransposeOptions(_)),
            Op::Transpose,
        )?,
        (B::STRIDED_SLICE, O::StridedSliceOptions(o)) => Op::StridedSlice(StridedSliceOptions {
            begin_mask: o.begin_mask,
            end_mask: o.end_mask,
            ellipsis_mask: o.ellipsis_mask,
            new_axis_mask: o.new_axis_mask,
            shrink_axis_mask: o.shrink_axis_mask,
            offset: o.offset,
        }),
        (B::SLICE, _) => fieldless(none || matches!(options, O::SliceOptions(_)), Op::Slice)?,
        (B::SPLIT, O::SplitOptions(o)) => Op::Split {
            num_splits: o.num_splits,
        },
        (B::SPLIT_V, O::SplitVOptions(o)) => Op::SplitV {
            num_splits: o.num_splits,
        },
        (B::PACK, O::PackOptions(o)) => Op::Pack(PackOptions {
            values_count: o.values_count,
            axis: o.axis,
        }),
        (B::UNPACK, O::UnpackOptions(o)) => Op::Unpack(UnpackOptions {
            num: o.num,
            axis: o.axis,
        }),
        (B::GATHER, O::GatherOptions(o)) => Op::Gather(GatherOptions {
            axis: o.axis,
            batch_dims: o.batch_dims,
        }),
        (B::RESIZE_BILINEAR, O::ResizeBilinearOptions(o)) => Op::ResizeBilinear(ResizeOptions {
            align_corners: o.align_corners,
            half_pixel_centers: o.half_pixel_centers,
        }),
        (B::RESIZE_NEAREST_NEIGHBOR, O::ResizeNearestNeighborOptions(o)) => {
            Op::ResizeNearestNeighbor(ResizeOptions {
                align_corners: o.align_corners,
                half_pixel_centers: o.half_pixel_centers,
            })
        }
        (B::DEPTH_TO_SPACE, O::DepthToSpaceOptions(o)) => Op::DepthToSpace {
            block_size: o.block_size,
        },
        (B::SPACE_TO_DEPTH, O::SpaceToDepthOptions(o)) => Op::SpaceToDepth {
            block_size: o.block_size,
        },
        (B::QUANTIZE, _) => fieldless(
            none || matches!(options, O::QuantizeOptions(_)),
            Op::Quantize,
        )?,
        (B::DEQUANTIZE, _) => fieldless(
            none || matches!(options, O::DequantizeOptions(_)),
            Op::Dequantize,
        )?,
        (B::DENSIFY, _) => fieldless(none || matches!(options, O::DensifyOptions(_)), Op::Densify)?,
        (B::MAXIMUM, _) => fieldless(
            none || matches!(options, O::MaximumMinimumOptions(_)),
            Op::Maximum,
        )?,
        (B::MINIMUM, _) => fieldless(
            none || matches!(options, O::MaximumMinimumOptions(_)),
            Op::Minimum,
        )?,
        (B::ARG_MAX, O::ArgMaxOptions(o)) => Op::ArgMax(ArgMaxOptions {
            output_type: dtype_from_fb(o.output_type)?,
        }),
        (B::CAST, O::NONE) => Op::Cast(None),
        (B::CAST, O::CastOptions(o)) => Op::Cast(Some(CastOptions {
            in_data_type: dtype_from_fb(o.in_data_type)?,
            out_data_type: dtype_from_fb(o.out_data_type)?,
        })),
        (B::L2_NORMALIZATION, O::L2NormOptions(o)) => Op::L2Normalization {
            activation: act(o.fused_activation_function)?,
        },
        (B::SHAPE, O::ShapeOptions(o)) => Op::Shape {
            out_type: dtype_from_fb(o.out_type)?,
        },
        _ => return None,
    })
}

/// The builtin code and options table of a typed op. Ops whose schema has an empty options
/// table get it written, as TensorFlow's converter does.
fn typed_to_file(op: &Op) -> (B, O) {
    use fb::*;
    match op {
        Op::Add(o) => (
            B::ADD,
            O::AddOptions(Box::new(AddOptionsT {
                fused_activation_function: fb_act(o.activation),
                pot_scale_int16: o.pot_scale_int16,
            })),
        ),
        Op::Sub(o) => (
            B::SUB,
            O::SubOptions(Box::new(SubOptionsT {
                fused_activation_function: fb_act(o.activation),
                pot_scale_int16: o.pot_scale_int16,
            })),
        ),
        Op::Mul { activation } => (
            B::MUL,
            O::MulOptions(Box::new(MulOptionsT {
                fused_activation_function: fb_act(*activation),
            })),
        ),
        Op::Conv2D(o) => (
            B::CONV_2D,
            O::Conv2DOptions(Box::new(Conv2DOptionsT {
                padding: fb_pad(o.padding),
                stride_w: o.stride_w,
                stride_h: o.stride_h,
                fused_activation_function: fb_act(o.activation),
                dilation_w_factor: o.dilation_w,
                dilation_h_factor: o.dilation_h,
                quantized_bias_type: dtype_to_fb(o.quantized_bias_type),
            })),
        ),
        Op::DepthwiseConv2D(o) => (
            B::DEPTHWISE_CONV_2D,
            O::DepthwiseConv2DOptions(Box::new(DepthwiseConv2DOptionsT {
                padding: fb_pad(o.padding),
                stride_w: o.stride_w,
                stride_h: o.stride_h,
                depth_multiplier: o.depth_multiplier,
                fused_activation_function: fb_act(o.activation),
                dilation_w_factor: o.dilation_w,
                dilation_h_factor: o.dilation_h,
            })),
        ),
        Op::FullyConnected(o) => (
            B::FULLY_CONNECTED,
            O::FullyConnectedOptions(Box::new(FullyConnectedOptionsT {
                fused_activation_function: fb_act(o.activation),
                weights_format: weights_format_to_fb(o.weights_format),
                keep_num_dims: o.keep_num_dims,
                asymmetric_quantize_inputs: o.asymmetric_quantize_inputs,
                quantized_bias_type: dtype_to_fb(o.quantized_bias_type),
            })),
        ),
        Op::TransposeConv(o) => (
            B::TRANSPOSE_CONV,
            O::TransposeConvOptions(Box::new(TransposeConvOptionsT {
                padding: fb_pad(o.padding),
                stride_w: o.stride_w,
                stride_h: o.stride_h,
                fused_activation_function: fb_act(o.activation),
                quantized_bias_type: dtype_to_fb(o.quantized_bias_type),
            })),
        ),
        Op::BatchMatMul(o) => (
            B::BATCH_MATMUL,
            O::BatchMatMulOptions(Box::new(BatchMatMulOptionsT {
                adj_x: o.adj_x,
                adj_y: o.adj_y,
                asymmetric_quantize_inputs: o.asymmetric_quantize_inputs,
            })),
        ),
        Op::AveragePool2D(o) | Op::MaxPool2D(o) => (
            if matches!(op, Op::MaxPool2D(_)) {
                B::MAX_POOL_2D
            } else {
                B::AVERAGE_POOL_2D
            },
            O::Pool2DOptions(Box::new(Pool2DOptionsT {
                padding: fb_pad(o.padding),
                stride_w: o.stride_w,
                stride_h: o.stride_h,
                filter_width: o.filter_width,
                filter_height: o.filter_height,
                fused_activation_function: fb_act(o.activation),
            })),
        ),
        Op::Mean { keep_dims } | Op::Sum { keep_dims } | Op::ReduceMax { keep_dims } => (
            match op {
                Op::Mean { .. } => B::MEAN,
                Op::Sum { .. } => B::SUM,
                _ => B::REDUCE_MAX,
            },
            O::ReducerOptions(Box::new(ReducerOptionsT {
                keep_dims: *keep_dims,
            })),
        ),
        Op::Softmax { beta } => (
            B::SOFTMAX,
            O::SoftmaxOptions(Box::new(SoftmaxOptionsT { beta: *beta })),
        ),
        Op::LogSoftmax => (B::LOG_SOFTMAX, O::LogSoftmaxOptions(Box::default())),
        Op::Logistic => (B::LOGISTIC, O::NONE),
        Op::Tanh => (B::TANH, O::NONE),
        Op::Relu => (B::RELU, O::NONE),
        Op::Relu6 => (B::RELU6, O::NONE),
        Op::ReluN1To1 => (B::RELU_N1_TO_1, O::NONE),
        Op::LeakyRelu { alpha } => (
            B::LEAKY_RELU,
            O::LeakyReluOptions(Box::new(LeakyReluOptionsT { alpha: *alpha })),
        ),
        Op::Prelu => (B::PRELU, O::NONE),
        Op::HardSwish => (B::HARD_SWISH, O::HardSwishOptions(Box::default())),
        Op::Elu => (B::ELU, O::NONE),
        Op::Concatenation(o) => (
            B::CONCATENATION,
            O::ConcatenationOptions(Box::new(ConcatenationOptionsT {
                axis: o.axis,
                fused_activation_function: fb_act(o.activation),
            })),
        ),
        Op::Pad => (B::PAD, O::PadOptions(Box::default())),
        Op::PadV2 => (B::PADV2, O::PadV2Options(Box::default())),
        Op::MirrorPad { mode } => (
            B::MIRROR_PAD,
            O::MirrorPadOptions(Box::new(MirrorPadOptionsT {
                mode: mirror_mode_to_fb(*mode),
            })),
        ),
        Op::Reshape { new_shape } => (
            B::RESHAPE,
            match new_shape {
                None => O::NONE,
                Some(shape) => O::ReshapeOptions(Box::new(ReshapeOptionsT {
                    new_shape: Some(shape.clone()),
                })),
            },
        ),
        Op::Squeeze { squeeze_dims } => (
            B::SQUEEZE,
            O::SqueezeOptions(Box::new(SqueezeOptionsT {
                squeeze_dims: Some(squeeze_dims.clone()),
            })),
        ),
        Op::ExpandDims => (B::EXPAND_DIMS, O::ExpandDimsOptions(Box::default())),
        Op::Transpose => (B::TRANSPOSE, O::TransposeOptions(Box::default())),
        Op::StridedSlice(o) => (
            B::STRIDED_SLICE,
            O::StridedSliceOptions(Box::new(StridedSliceOptionsT {
                begin_mask: o.begin_mask,
                end_mask: o.end_mask,
                ellipsis_mask: o.ellipsis_mask,
                new_axis_mask: o.new_axis_mask,
                shrink_axis_mask: o.shrink_axis_mask,
                offset: o.offset,
            })),
        ),
        Op::Slice => (B::SLICE, O::SliceOptions(Box::default())),
        Op::Split { num_splits } => (
            B::SPLIT,
            O::SplitOptions(Box::new(SplitOptionsT {
                num_splits: *num_splits,
            })),
        ),
        Op::SplitV { num_splits } => (
            B::SPLIT_V,
            O::SplitVOptions(Box::new(SplitVOptionsT {
                num_splits: *num_splits,
            })),
        ),
        Op::Pack(o) => (
            B::PACK,
            O::PackOptions(Box::new(PackOptionsT {
                values_count: o.values_count,
                axis: o.axis,
            })),
        ),
        Op::Unpack(o) => (
            B::UNPACK,
            O::UnpackOptions(Box::new(UnpackOptionsT {
                num: o.num,
                axis: o.axis,
            })),
        ),
        Op::Gather(o) => (
            B::GATHER,
            O::GatherOptions(Box::new(GatherOptionsT {
                axis: o.axis,
                batch_dims: o.batch_dims,
            })),
        ),
        Op::ResizeBilinear(o) => (
            B::RESIZE_BILINEAR,
            O::ResizeBilinearOptions(Box::new(ResizeBilinearOptionsT {
                align_corners: o.align_corners,
                half_pixel_centers: o.half_pixel_centers,
            })),
        ),
        Op::ResizeNearestNeighbor(o) => (
            B::RESIZE_NEAREST_NEIGHBOR,
            O::ResizeNearestNeighborOptions(Box::new(ResizeNearestNeighborOptionsT {
                align_corners: o.align_corners,
                half_pixel_centers: o.half_pixel_centers,
            })),
        ),
        Op::DepthToSpace { block_size } => (
            B::DEPTH_TO_SPACE,
            O::DepthToSpaceOptions(Box::new(DepthToSpaceOptionsT {
                block_size: *block_size,
            })),
        ),
        Op::SpaceToDepth { block_size } => (
            B::SPACE_TO_DEPTH,
            O::SpaceToDepthOptions(Box::new(SpaceToDepthOptionsT {
                block_size: *block_size,
            })),
        ),
        Op::Quantize => (B::QUANTIZE, O::QuantizeOptions(Box::default())),
        Op::Dequantize => (B::DEQUANTIZE, O::DequantizeOptions(Box::default())),
        Op::Densify => (B::DENSIFY, O::DensifyOptions(Box::default())),
        Op::Maximum => (B::MAXIMUM, O::MaximumMinimumOptions(Box::default())),
        Op::Minimum => (B::MINIMUM, O::MaximumMinimumOptions(Box::default())),
        Op::ArgMax(o) => (
            B::ARG_MAX,
            O::ArgMaxOptions(Box::new(ArgMaxOptionsT {
                output_type: dtype_to_fb(o.output_type),
            })),
        ),
        Op::Cast(options) => (
            B::CAST,
            match options {
                None => O::NONE,
                Some(o) => O::CastOptions(Box::new(CastOptionsT {
                    in_data_type: dtype_to_fb(o.in_data_type),
                    out_data_type: dtype_to_fb(o.out_data_type),
                })),
            },
        ),
        Op::L2Normalization { activation } => (
            B::L2_NORMALIZATION,
            O::L2NormOptions(Box::new(L2NormOptionsT {
                fused_activation_function: fb_act(*activation),
            })),
        ),
        Op::Shape { out_type } => (
            B::SHAPE,
            O::ShapeOptions(Box::new(ShapeOptionsT {
                out_type: dtype_to_fb(*out_type),
            })),
        ),
        // Handled by the caller; listed so the match stays exhaustive.
        Op::Other(_) | Op::Custom(_) => (B::CUSTOM, O::NONE),
    }
}
