//! Images: pull, status by tag/id/digest, list, remove, credentials, missing images.

use cri_client::cri_api::v1::*;

use super::case;
use crate::conformance::ctx::{check, expect_eq, skip};
use crate::conformance::{Case, Ctx, Stop};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "image",
            "pull",
            "PullImage returns a non-empty image_ref that ImageStatus resolves",
            pull
        ),
        case!(
            "image",
            "pull-with-auth",
            "PullImage accepts credentials",
            pull_with_auth
        ),
        case!(
            "image",
            "status-by-tag-and-id",
            "ImageStatus finds the image by each tag and by id",
            status_lookups
        ),
        case!(
            "image",
            "status-by-digest",
            "ImageStatus finds the image by its repo digest",
            status_by_digest
        ),
        case!("image", "list", "ListImages includes the image", list),
        case!(
            "image",
            "list-filter",
            "a ListImages filter narrows the list to the image",
            list_filter
        ),
        case!(
            "image",
            "missing-image",
            "ImageStatus of a missing image succeeds with no image",
            missing
        ),
        case!(
            "image",
            "remove",
            "RemoveImage removes the image; ImageStatus then finds nothing",
            remove
        ),
        case!(
            "image",
            "fs-info",
            "ImageFsInfo reports the image filesystem",
            fs_info
        ),
    ]
}

fn pullable(ctx: &Ctx) -> Result<String, Stop> {
    match &ctx.config().pull_image {
        Some(image) => Ok(image.clone()),
        None => skip("no pullable image configured (offline runtime); pass --pull-image to run"),
    }
}

async fn present(ctx: &Ctx) -> Result<Image, Stop> {
    ctx.ensure_image().await?;
    let image = ctx.client().image_status(&ctx.config().image).await?;
    match image {
        Some(image) => Ok(image),
        None => Err(Stop::Fail(crate::conformance::Failure {
            check: "ImageStatus of the suite image".into(),
            expected: "an image".into(),
            got: "none".into(),
        })),
    }
}

async fn pull(ctx: Ctx) -> Result<(), Stop> {
    let image = pullable(&ctx)?;
    let image_ref = ctx.client().pull_image(&image, None).await?;
    let status = ctx.client().image_status(&image).await?;
    check(
        status.is_some(),
        "ImageStatus after PullImage",
        "an image",
        &status,
    )?;
    let by_ref = ctx.client().image_status(&image_ref).await?;
    check(
        by_ref.is_some(),
        "ImageStatus of the returned image_ref",
        "an image",
        &image_ref,
    )
}

async fn pull_with_auth(ctx: Ctx) -> Result<(), Stop> {
    let image = pullable(&ctx)?;
    let auth = AuthConfig {
        username: "cri-testkit".into(),
        password: "not-a-real-secret".into(),
        ..Default::default()
    };
    let image_ref = ctx.client().pull_image(&image, Some(auth)).await?;
    check(!image_ref.is_empty(), "image_ref", "non-empty", image_ref)
}

async fn status_lookups(ctx: Ctx) -> Result<(), Stop> {
    let image = present(&ctx).await?;
    let by_id = ctx.client().image_status(&image.id).await?;
    expect_eq(
        "ImageStatus by id",
        Some(&image.id),
        by_id.as_ref().map(|i| &i.id),
    )?;
    check(
        !image.repo_tags.is_empty(),
        "the image has repo tags",
        "at least one",
        &image.repo_tags,
    )?;
    for tag in &image.repo_tags {
        let found = ctx.client().image_status(tag).await?;
        expect_eq(
            &format!("ImageStatus by tag {tag}"),
            Some(&image.id),
            found.as_ref().map(|i| &i.id),
        )?;
    }
    Ok(())
}

async fn status_by_digest(ctx: Ctx) -> Result<(), Stop> {
    let image = present(&ctx).await?;
    let Some(digest) = image.repo_digests.first() else {
        return skip("the image has no repo digest (imported, not pulled)");
    };
    let found = ctx.client().image_status(digest).await?;
    expect_eq(
        &format!("ImageStatus by digest {digest}"),
        Some(&image.id),
        found.as_ref().map(|i| &i.id),
    )
}

async fn list(ctx: Ctx) -> Result<(), Stop> {
    let image = present(&ctx).await?;
    let all = ctx.client().list_images(None).await?;
    check(
        all.iter().any(|i| i.id == image.id),
        "ListImages includes the image",
        &image.id,
        all.iter().map(|i| &i.id).collect::<Vec<_>>(),
    )
}

async fn list_filter(ctx: Ctx) -> Result<(), Stop> {
    let image = present(&ctx).await?;
    let all = ctx.client().list_images(None).await?;
    let filter = ImageFilter {
        image: Some(ImageSpec {
            image: image.id.clone(),
            ..Default::default()
        }),
    };
    let filtered: Vec<String> = ctx
        .client()
        .list_images(Some(filter))
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect();
    if all.len() > 1 && filtered.len() == all.len() {
        return skip(format!(
            "the runtime ignores ImageFilter (all {} images returned)",
            all.len()
        ));
    }
    expect_eq(
        "ListImages filtered by id",
        vec![image.id.clone()],
        filtered,
    )
}

async fn missing(ctx: Ctx) -> Result<(), Stop> {
    let status = ctx
        .client()
        .image_status("cri-testkit.invalid/never-pulled:none")
        .await?;
    expect_eq("image of a missing reference", None, status)
}

async fn remove(ctx: Ctx) -> Result<(), Stop> {
    let Some(image) = ctx.config().removable_image.clone() else {
        return skip("no removable image configured; pass --removable-image to run");
    };
    if ctx.client().image_status(&image).await?.is_none() {
        if ctx.config().pull_image.is_none() {
            return skip(format!(
                "removable image {image:?} is not present and pulling is disabled"
            ));
        }
        ctx.client().pull_image(&image, None).await?;
    }
    ctx.client().remove_image(&image).await?;
    let after = ctx.client().image_status(&image).await?;
    expect_eq("ImageStatus after RemoveImage", None, after.map(|i| i.id))
}

async fn fs_info(ctx: Ctx) -> Result<(), Stop> {
    let info = ctx.client().image_fs_info().await?;
    check(
        !info.image_filesystems.is_empty(),
        "image_filesystems",
        "at least one",
        &info,
    )?;
    let fs = &info.image_filesystems[0];
    check(
        fs.fs_id.as_ref().is_some_and(|f| !f.mountpoint.is_empty()),
        "fs_id.mountpoint",
        "non-empty",
        fs,
    )?;
    check(fs.used_bytes.is_some(), "used_bytes", "set", fs)
}
