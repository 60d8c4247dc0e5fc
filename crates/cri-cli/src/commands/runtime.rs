//! `version`, `info` and `runtime-config`: what the runtime says about itself.

use crate::cli::DataFormat;
use crate::commands::Ctx;
use crate::error::Result;
use crate::output::{to_json, write_document};

/// `version`: crictl's four lines, or the `VersionResponse` as JSON/YAML.
pub(crate) async fn version(ctx: &mut Ctx<'_>, output: Option<DataFormat>) -> Result<i32> {
    let version = ctx.client.version().await?;
    match output {
        None => {
            writeln!(ctx.out, "Version:  {}", version.version)?;
            writeln!(ctx.out, "RuntimeName:  {}", version.runtime_name)?;
            writeln!(ctx.out, "RuntimeVersion:  {}", version.runtime_version)?;
            writeln!(
                ctx.out,
                "RuntimeApiVersion:  {}",
                version.runtime_api_version
            )?;
        }
        Some(format) => write_document(ctx.out, &to_json(&version)?, format.document())?,
    }
    Ok(0)
}

/// `info`: the `StatusResponse` (verbose unless `quiet`).
pub(crate) async fn info(ctx: &mut Ctx<'_>, output: DataFormat, quiet: bool) -> Result<i32> {
    let status = ctx.client.status(!quiet).await?;
    write_document(ctx.out, &to_json(&status)?, output.document())?;
    Ok(0)
}

/// `runtime-config`: the `RuntimeConfigResponse`.
pub(crate) async fn runtime_config(ctx: &mut Ctx<'_>, output: DataFormat) -> Result<i32> {
    let config = ctx.client.runtime_config().await?;
    write_document(ctx.out, &to_json(&config)?, output.document())?;
    Ok(0)
}
