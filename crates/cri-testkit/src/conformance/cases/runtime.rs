//! Runtime information: version, status conditions, runtime config.

use cri_client::cri_api::well_known::condition;

use super::case;
use crate::conformance::ctx::{check, expect_eq};
use crate::conformance::{Case, Ctx, Stop};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "runtime",
            "version",
            "Version reports every field and API version v1",
            version
        ),
        case!(
            "runtime",
            "status-conditions",
            "Status reports RuntimeReady and NetworkReady, both true",
            status
        ),
        case!(
            "runtime",
            "runtime-config",
            "RuntimeConfig reports a cgroup driver",
            runtime_config
        ),
        case!(
            "runtime",
            "update-runtime-config",
            "UpdateRuntimeConfig accepts a pod CIDR",
            update_runtime_config
        ),
    ]
}

async fn version(ctx: Ctx) -> Result<(), Stop> {
    let version = ctx
        .client()
        .runtime_client()
        .version(cri_client::cri_api::v1::VersionRequest::default())
        .await;
    let version = version
        .map_err(|s| cri_client::Error::from_status("Version", s))?
        .into_inner();
    expect_eq(
        "runtime_api_version",
        "v1",
        version.runtime_api_version.as_str(),
    )?;
    check(
        !version.runtime_name.is_empty(),
        "runtime_name is set",
        "non-empty",
        &version.runtime_name,
    )?;
    check(
        !version.runtime_version.is_empty(),
        "runtime_version is set",
        "non-empty",
        &version.runtime_version,
    )?;
    check(
        !version.version.is_empty(),
        "version is set",
        "non-empty",
        &version.version,
    )
}

async fn status(ctx: Ctx) -> Result<(), Stop> {
    let response = ctx.client().status(true).await?;
    let conditions = response.status.map(|s| s.conditions).unwrap_or_default();
    for required in [condition::RUNTIME_READY, condition::NETWORK_READY] {
        let found = conditions.iter().find(|c| c.r#type == required);
        check(
            found.is_some(),
            &format!("condition {required} is reported"),
            "present",
            &conditions,
        )?;
        let found = found.expect("checked");
        check(
            found.status,
            &format!("condition {required} is true"),
            true,
            found,
        )?;
    }
    for c in &conditions {
        let camel = c.reason.is_empty()
            || c.reason.chars().next().is_some_and(char::is_uppercase) && !c.reason.contains(' ');
        check(
            camel,
            "condition reasons are CamelCase",
            "CamelCase",
            &c.reason,
        )?;
    }
    Ok(())
}

async fn runtime_config(ctx: Ctx) -> Result<(), Stop> {
    let response = ctx.client().runtime_config().await?;
    check(
        response.linux.is_some(),
        "RuntimeConfig has a linux section",
        "Some",
        response,
    )
}

async fn update_runtime_config(ctx: Ctx) -> Result<(), Stop> {
    ctx.client().update_runtime_config("10.244.0.0/16").await?;
    Ok(())
}
