//! `octet params`: the legacy converter's `mean`/`std_dev`, a quantized tensor's
//! `scale`/`zero_point`, and the float range they represent, each computed from any of the others.

use anyhow::{Result, bail};
use clap::Args;
use octet_core::DType;
use octet_quant::params::{IntRange, ParamsTable};

/// Arguments of `octet params`.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("from").required(true).args(["range", "mean", "scale"])))]
pub struct ParamsArgs {
    /// A float range MIN,MAX (e.g. `--range=-1,1`).
    #[arg(long, value_name = "MIN,MAX", allow_hyphen_values = true)]
    range: Option<String>,
    /// The legacy converter's --mean_values (needs --std-dev).
    #[arg(long, requires = "std_dev", allow_hyphen_values = true)]
    mean: Option<f64>,
    /// The legacy converter's --std_dev_values.
    #[arg(long, requires = "mean")]
    std_dev: Option<f64>,
    /// A quantized tensor's scale (needs --zero-point).
    #[arg(long, requires = "zero_point")]
    scale: Option<f64>,
    /// A quantized tensor's zero point.
    #[arg(long, requires = "scale", allow_hyphen_values = true)]
    zero_point: Option<i32>,
    /// The integer type.
    #[arg(long, default_value = "uint8", value_parser = ["uint8", "int8"])]
    dtype: String,
    /// Print one JSON line with mean, std_dev, scale, zero_point, min, max.
    #[arg(long)]
    json: bool,
}

fn parse_range(text: &str) -> Result<(f64, f64)> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let [min, max] = parts.as_slice() else {
        bail!("--range takes MIN,MAX, got {text:?}");
    };
    Ok((min.parse()?, max.parse()?))
}

/// Runs `octet params`.
pub fn run(args: &ParamsArgs) -> Result<()> {
    let dtype = if args.dtype == "int8" {
        DType::Int8
    } else {
        DType::UInt8
    };
    let range = IntRange::of(dtype)?;
    let p = if let Some(text) = &args.range {
        let (min, max) = parse_range(text)?;
        ParamsTable::for_range(min, max, range)?
    } else if let (Some(mean), Some(std_dev)) = (args.mean, args.std_dev) {
        ParamsTable::for_mean_std(mean, std_dev, range)?
    } else if let (Some(scale), Some(zero_point)) = (args.scale, args.zero_point) {
        ParamsTable::for_scale_zero_point(scale, zero_point, range)?
    } else {
        bail!("give --range, --mean with --std-dev, or --scale with --zero-point");
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "mean": p.mean,
                "std_dev": p.std_dev,
                "scale": p.scale,
                "zero_point": p.zero_point,
                "min": p.min,
                "max": p.max,
            })
        );
    } else {
        println!("dtype       {dtype}");
        println!("mean        {}    (--mean_values)", p.mean);
        println!("std_dev     {}    (--std_dev_values)", p.std_dev);
        println!("scale       {}    (= 1 / std_dev)", p.scale);
        println!(
            "zero_point  {}    (= mean, rounded half away from zero and clamped to {dtype})",
            p.zero_point
        );
        println!(
            "range       [{}, {}]    (exactly representable: real = scale * (q - zero_point))",
            p.min, p.max
        );
    }
    Ok(())
}
